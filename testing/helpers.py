"""Small helpers that test modules import: waiting, failing for a missing server, Django's default
database pointed at another server for a while, protobuf times, running an import, writing
readings over gRPC and reading back what the store holds.

No fixtures here (they live in the plugin modules beside this one), so any test module or
benchmark may import it.
"""
import os
import subprocess
import time
from contextlib import contextmanager
from io import StringIO
from pathlib import Path

import pytest
from django.core.management import call_command
from google.protobuf import timestamp_pb2

from grpc_api.gen.meterusage.v1 import meter_usage_pb2 as pb
from testing.influxd import free_port  # noqa: F401  (imported from here by test modules)

REPO = Path(__file__).resolve().parent.parent
HEADER = "time,meterusage\n"

# The token the tests' gRPC servers accept for writes (GRPC_WRITE_TOKENS), as call metadata.
WRITE_TOKEN = "w-token"
WRITER = (("authorization", f"Bearer {WRITE_TOKEN}"),)
# The service token that reads every meter (GRPC_AUTH_TOKENS, set in pytest.ini): the tests'
# channels send it on calls that carry no credential of their own.
READ_TOKEN = "r-token"
READER = (("authorization", f"Bearer {READ_TOKEN}"),)


def require(reason: str) -> None:
    """Fail in CI, where everything must be there; skip on a developer's machine."""
    if os.environ.get("CI"):
        pytest.fail(reason, pytrace=False)
    pytest.skip(reason)


@contextmanager
def django_database(url: str):
    """Django's default database is `url` meanwhile (every thread's new connections included)."""
    import dj_database_url
    from django.db import connections

    before = connections.settings["default"]
    connections.close_all()
    connections.settings["default"] = connections.configure_settings(
        {"default": dj_database_url.parse(url, conn_max_age=0)}
    )["default"]
    _forget_connection(connections)
    try:
        yield
    finally:
        connections.close_all()
        connections.settings["default"] = before
        _forget_connection(connections)


def _forget_connection(connections) -> None:
    """Drop this thread's connection object, made with the settings before (if any)."""
    try:
        del connections["default"]
    except AttributeError:
        pass


def wait_for(predicate, timeout: float = 5.0):
    """Poll `predicate` until it returns something true, or fail after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = predicate()
        if result:
            return result
        time.sleep(0.02)
    pytest.fail(f"gave up waiting after {timeout}s")


def ts(text: str) -> timestamp_pb2.Timestamp:
    stamp = timestamp_pb2.Timestamp()
    stamp.FromJsonString(text)
    return stamp


# The reference month as the range of a gRPC request.
JANUARY = {"start_time": ts("2019-01-01T00:00:00Z"), "end_time": ts("2019-02-01T00:00:00Z")}


def grpc_calls(method: str = "ListReadings") -> float:
    """Calls of `method` that gRPC servers of this process have answered, whatever their status."""
    from prometheus_client import REGISTRY

    return sum(
        sample.value
        for metric in REGISTRY.collect() if metric.name == "grpc_server_handled"
        for sample in metric.samples
        if sample.name == "grpc_server_handled_total" and sample.labels["grpc_method"].endswith(f"/{method}")
    )


def all_reading_pages(stub, **request) -> tuple[list[tuple[str, float]], int]:
    """Every reading ListReadings gives for `request`, page after page, and the number of calls."""
    readings, token, calls = [], "", 0
    while True:
        response = stub.ListReadings(pb.ListReadingsRequest(**request, page_token=token))
        readings += [(r.time.ToJsonString(), r.value) for r in response.readings]
        calls += 1
        token = response.next_page_token
        if not token:
            return readings, calls


def write_readings(stub, meter: str, *pairs: tuple[str | int, float]) -> pb.WriteReadingsResponse:
    """WriteReadings of (time, value) pairs of one meter with the write token; a time is the
    meter's wall clock ("2019-01-01 00:15:00") or seconds since the epoch."""
    readings = []
    for time_, value in pairs:
        reading = pb.ReadingInput(meter=meter, value=value)
        if isinstance(time_, int):
            reading.time.seconds = time_
        else:
            reading.local_time = time_
        readings.append(reading)
    return stub.WriteReadings(pb.WriteReadingsRequest(readings=readings), metadata=WRITER)


def stored(meter: str) -> dict[str, float]:
    """The readings the relational store holds for `meter`: {ISO 8601 UTC time: value}, in time order."""
    from readings.models import Reading

    return {r.time.isoformat(): r.value for r in Reading.objects.filter(meter__name=meter).order_by("time")}


def problem(response, status: int) -> dict:
    """The RFC 9457 problem document of an HTTP answer (Django's test client's or requests'),
    checked to be one, of `status`."""
    assert response.status_code == status, response.content[:300]
    assert response.headers["Content-Type"] == "application/problem+json"
    body = response.json()
    assert body["type"] == "about:blank"
    assert body["status"] == status
    assert body["title"] and body["detail"]
    return body


def import_file(*paths, **options) -> str:
    """Run import_readings on `paths`; returns what it printed."""
    out = StringIO()
    call_command("import_readings", *map(str, paths), stdout=out, stderr=StringIO(), **options)
    return out.getvalue()


def file_reason(time_text: str, value_text: str) -> str:
    """The reason a file import gives for a row of this time and value."""
    from readings.writes.rows import clean_rows

    _, report = clean_rows([time_text], [value_text])
    return report.problems[0].reason


def self_signed_certificate(folder: Path) -> tuple[Path, Path]:
    """A key and a certificate for localhost and 127.0.0.1, made with openssl."""
    key, cert = folder / "key.pem", folder / "cert.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=localhost",
         "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1", "-keyout", key, "-out", cert],
        check=True, capture_output=True,
    )
    return key, cert


UPSERT_DAY = 1_546_300_800  # 2019-01-01 00:00 UTC: slot 0 of `staged_rows`


def staged_rows(meter, *pairs: tuple[int, float]):
    """Rows of `meter` to upsert: (quarter-hour slot after 2019-01-01 00:00 UTC, value) pairs."""
    import numpy as np

    from readings.sources.sql.upsert import StagedRows

    epochs = np.array([UPSERT_DAY + 900 * slot for slot, _ in pairs], dtype=np.int64)
    values = np.array([value for _, value in pairs], dtype=np.float64)
    return StagedRows(np.full(len(pairs), meter.pk, dtype=np.int64), np.arange(len(pairs), dtype=np.int64), epochs, values)


def upsert_staged(*batches, meters: list):
    """Upsert staged rows of `meters` in a transaction of their own, as a gRPC write by a key."""
    from django.db import transaction

    from readings.domain import WriteBy
    from readings.sources.sql.upsert import upsert_readings

    with transaction.atomic():
        return upsert_readings(meters=meters, batches=list(batches), by=WriteBy("grpc", "key:abcd1234"))
