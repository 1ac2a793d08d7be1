"""InfluxDB over its 1.x HTTP API: `/write` (line protocol), `/query` (InfluxQL), `/ping`.

This API is served natively by InfluxDB 1.x, by InfluxDB 2.x (v1 compatibility endpoints, with a
DBRP mapping per bucket) and by InfluxDB 3 Core, so one client speaks to all three. Readings are
stored as measurement `meter_usage`, tag `meter`, field `value`, at second precision.
"""
from dataclasses import dataclass

import numpy as np
import orjson
import pyarrow as pa
import pyarrow.compute as pc
import requests
from django.conf import settings
from requests.adapters import HTTPAdapter
from urllib3.util.retry import Retry

MEASUREMENT = "meter_usage"
TAG = "meter"
FIELD = "value"
DEFAULT_WRITE_BATCH = 5000
# What InfluxDB can store: int64 nanoseconds since the epoch (1677-09-21 to 2262-04-11).
EARLIEST, LATEST = -(2**63 - 2) // 10**9 + 1, (2**63 - 2) // 10**9


class InfluxError(Exception):
    """InfluxDB refused a request (bad credentials, missing database, rejected points)."""


class InfluxUnavailable(InfluxError):
    """InfluxDB cannot be reached or failed on its side; trying again later may work."""


@dataclass(frozen=True)
class InfluxSettings:
    url: str
    database: str
    token: str = ""
    username: str = ""
    password: str = ""
    retention_policy: str = ""
    timeout: float = 10.0

    @classmethod
    def from_settings(cls, **overrides) -> "InfluxSettings":
        values = {key.lower(): value for key, value in settings.INFLUXDB.items()}
        values.update({key.lower(): value for key, value in overrides.items()})
        return cls(**values)


def escape_tag(value: str) -> str:
    """A tag value as line protocol wants it: commas, spaces and equals signs escaped. A line
    break ends a point, and InfluxDB 1.x keeps a backslash as it is, so a value holding either
    could not be read back as written: ValueError."""
    if any(character in value for character in "\n\r\\"):
        raise ValueError(f"{value[:64]!r} cannot be an InfluxDB tag value (line breaks and backslashes cannot be written)")
    return value.replace(",", "\\,").replace(" ", "\\ ").replace("=", "\\=")


def quote_string(value: str) -> str:
    """An InfluxQL string literal."""
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def quote_identifier(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def line_protocol(meter: str, epochs: np.ndarray, values: np.ndarray) -> bytes:
    """Points of one meter as line protocol, built column-wise (no Python loop per point)."""
    if not len(epochs):
        return b""
    prefix = f"{MEASUREMENT},{TAG}={escape_tag(meter)} {FIELD}="
    # Arrow prints the shortest text that reads back as the same double, as InfluxDB needs.
    lines = pc.binary_join_element_wise(
        prefix, pa.array(values).cast(pa.string()), " ", pa.array(epochs).cast(pa.string()), "\n", ""
    )
    # The lines lie back to back in the array's data buffer: that buffer is the request body.
    offsets = np.frombuffer(lines.buffers()[1], dtype=np.int32)
    first, last = offsets[lines.offset], offsets[lines.offset + len(lines)]
    return lines.buffers()[2].to_pybytes()[first:last]


class InfluxClient:
    """A pooled, keep-alive session to one InfluxDB database, with timeouts and a bounded retry
    of connection failures (writes are idempotent: a point written twice is one point)."""

    def __init__(self, config: InfluxSettings):
        self.config = config
        self.base = config.url.rstrip("/")
        self.session = requests.Session()
        retry = Retry(total=3, connect=3, read=0, status=0, backoff_factor=0.2, allowed_methods=None)
        adapter = HTTPAdapter(max_retries=retry, pool_connections=4, pool_maxsize=16)
        self.session.mount("http://", adapter)
        self.session.mount("https://", adapter)
        if config.token:
            self.session.headers["Authorization"] = f"Token {config.token}"
        elif config.username:
            self.session.auth = (config.username, config.password)

    def __repr__(self) -> str:
        return f"InfluxDB at {self.base} (database {self.config.database!r})"

    def _request(self, method: str, path: str, **kwargs) -> requests.Response:
        try:
            response = self.session.request(method, self.base + path, timeout=self.config.timeout, **kwargs)
        except requests.RequestException as exc:
            raise InfluxUnavailable(f"InfluxDB at {self.base} is unreachable: {_cause(exc)}") from None
        if response.status_code >= 500:
            raise InfluxUnavailable(f"InfluxDB at {self.base} failed: {response.status_code} {_error_text(response)}")
        if response.status_code in (401, 403):
            raise InfluxError(f"InfluxDB at {self.base} refused the credentials: {_error_text(response)}")
        if response.status_code == 404 and "database not found" in response.text:
            raise InfluxError(
                f"InfluxDB at {self.base} has no database {self.config.database!r} "
                "(create it, or pass --create-database to seed_influx)"
            )
        if response.status_code >= 400:
            raise InfluxError(f"InfluxDB at {self.base} rejected the request: {response.status_code} {_error_text(response)}")
        return response

    def ping(self) -> None:
        self._request("GET", "/ping")

    def _db_params(self) -> dict:
        params = {"db": self.config.database}
        if self.config.retention_policy:
            params["rp"] = self.config.retention_policy
        return params

    def write(self, lines: bytes) -> None:
        """POST line-protocol points (second precision)."""
        self._request("POST", "/write", params={**self._db_params(), "precision": "s"}, data=lines)

    def query(self, statement: str) -> list[dict]:
        """Run InfluxQL; returns the first result's series (times in epoch seconds)."""
        return self.query_all([statement])[0]

    def query_all(self, statements: list[str]) -> list[list[dict]]:
        """Run several InfluxQL statements in one request; the series of each, in order."""
        response = self._request(
            "GET", "/query", params={**self._db_params(), "q": "; ".join(statements), "epoch": "s"}
        )
        results = orjson.loads(response.content).get("results") or [{}]
        for result in results:
            if "error" in result:
                raise InfluxError(f"InfluxDB at {self.base} rejected the query: {result['error']}")
        return [result.get("series", []) for result in results] + [[]] * (len(statements) - len(results))

    def rows(self, statement: str) -> list[list]:
        """The rows of a query on one series ([] when it matched nothing)."""
        return self.rows_of_each([statement])[0]

    def rows_of_each(self, statements: list[str]) -> list[list[list]]:
        """The rows of several one-series statements, run in one request."""
        return [series[0]["values"] if series else [] for series in self.query_all(statements)]

    def create_database(self) -> None:
        response = self._request("POST", "/query", data={"q": f"CREATE DATABASE {quote_identifier(self.config.database)}"})
        results = response.json().get("results", [{}])
        if results and "error" in results[0]:
            raise InfluxError(f"InfluxDB at {self.base} could not create the database: {results[0]['error']}")

    def meter_filter(self, meter: str, start: int | None = None, end: int | None = None, *, after: int | None = None) -> str:
        """The FROM and WHERE of a query on one meter's points in [start, end), after `after`.
        Times are clipped to what InfluxDB can store: nothing lies outside it."""
        start, after = (None if t is None else min(max(t, EARLIEST), LATEST) for t in (start, after))
        clauses = [f"{TAG} = {quote_string(meter)}"]
        if after is not None and (start is None or after >= start):
            clauses.append(f"time > {after}s")
        elif start is not None:
            clauses.append(f"time >= {start}s")
        if end is not None:
            clauses.append(f"time <= {LATEST}s" if end > LATEST else f"time < {max(end, EARLIEST)}s")
        return f"FROM {self._measurement()} WHERE " + " AND ".join(clauses)

    def _measurement(self) -> str:
        if self.config.retention_policy:
            return f"{quote_identifier(self.config.retention_policy)}.{quote_identifier(MEASUREMENT)}"
        return quote_identifier(MEASUREMENT)


def _cause(exc: Exception) -> str:
    text = str(exc)
    for marker in ("Connection refused", "timed out", "Name or service not known"):
        if marker in text:
            return marker.lower()
    return text[:200]


def _error_text(response: requests.Response) -> str:
    try:
        return response.json().get("error", response.text.strip())
    except ValueError:
        return response.text.strip()[:200]
