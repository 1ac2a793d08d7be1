"""Readings from InfluxDB, with the work done in InfluxQL where InfluxDB 1.6 can do it."""
import math
import threading
import zoneinfo
from datetime import datetime, time

import numpy as np

from readings.models import Meter
from readings.sources.base import BucketStats, Extremes, Jumps, MeterSummary, Series, SourceUnavailable, jumps_of
from readings.sources.influx.client import (
    DEFAULT_WRITE_BATCH,
    InfluxClient,
    InfluxError,
    InfluxSettings,
    line_protocol,
    quote_string,
)

STORE = "InfluxDB"


class InfluxSource:
    """OPTIONS override the INFLUXDB setting's keys (URL, DATABASE, TOKEN, ...) for this alias;
    WRITE_BATCH is the number of points per write request (default 5000)."""

    def __init__(self, *, alias: str, WRITE_BATCH: int = DEFAULT_WRITE_BATCH, **options):
        self.alias = alias
        self.config = InfluxSettings.from_settings(**options)
        self.write_batch = WRITE_BATCH
        self._local = threading.local()

    def __str__(self) -> str:
        return f"database {self.config.database!r} at {self.config.url}"

    @property
    def client(self) -> InfluxClient:
        # One keep-alive session per thread: requests sessions are not meant to be shared.
        client = getattr(self._local, "client", None)
        if client is None:
            client = self._local.client = InfluxClient(self.config)
        return client

    def _rows(self, statement: str) -> list[list]:
        return self._rows_of_each([statement])[0]

    def _rows_of_each(self, statements: list[str]) -> list[list[list]]:
        """Rows of each statement, all sent in one request."""
        try:
            return self.client.rows_of_each(statements)
        except InfluxError as exc:
            raise SourceUnavailable(str(exc), store=STORE) from None

    def prepare_writes(self, *, create: bool = False) -> None:
        try:
            if create:
                self.client.create_database()
            self.client.write(b"")  # an empty write checks reachability, credentials and database
        except InfluxError as exc:
            raise SourceUnavailable(str(exc), store=STORE) from None

    def write(self, meter_name: str, series: Series, *, batch_size: int | None = None, on_written=None) -> int:
        size = batch_size or self.write_batch
        for low in range(0, len(series), size):
            times, values = series.times[low : low + size], series.values[low : low + size]
            try:
                self.client.write(line_protocol(meter_name, times, values))
            except InfluxError as exc:
                raise SourceUnavailable(str(exc), store=STORE) from None
            if on_written is not None:
                on_written(len(times))
        return len(series)

    def summary(self, meter: Meter) -> MeterSummary:
        where = self.client.meter_filter(meter.name)
        count, first, last = self._rows_of_each(
            [f"SELECT count(value) {where}", f"SELECT first(value) {where}", f"SELECT last(value) {where}"]
        )
        if not count:
            return MeterSummary(0, None, None)
        return MeterSummary(int(count[0][1]), int(first[0][0]), int(last[0][0]))

    def read(self, meter: Meter, *, start: int, end: int, after: int | None, limit: int) -> Series:
        where = self.client.meter_filter(meter.name, start, end, after=after)
        return Series.from_rows(self._rows(f"SELECT value {where} ORDER BY time ASC LIMIT {int(limit)}"))

    def aggregate(self, meter: Meter, *, edges: np.ndarray, zone: str = "UTC") -> BucketStats:
        # InfluxQL groups by fixed steps from the epoch, or by local days with tz(); it has no
        # months. It is asked for partial buckets that each lie inside one window (local days
        # when every edge is a local midnight, else the largest step dividing every edge), and
        # the partials are added up per window: exact for count, sum, min and max.
        size = len(edges) - 1
        where = self.client.meter_filter(meter.name, int(edges[0]), int(edges[-1]))
        select = f"SELECT count(value), sum(value), min(value), max(value) {where}"
        inner = [int(e) for e in edges[1:-1]]
        if not inner:
            grouping = ""
        elif zone != "UTC" and math.gcd(*inner) % 86400 and _all_local_midnights(inner, zone):
            grouping = f" GROUP BY time(1d) fill(none) tz({quote_string(zone)})"
        else:
            grouping = f" GROUP BY time({math.gcd(*inner)}s) fill(none)"
        # The extremes in the same request: min() and max() name the earliest of equal points.
        rows, low, high = self._rows_of_each([select + grouping, f"SELECT min(value) {where}", f"SELECT max(value) {where}"])
        if not rows:
            return BucketStats.from_rows(size, [])
        partial = np.array(rows, dtype=np.float64)
        # A partial that starts before the range (WHERE cut it) belongs to the first window.
        window = np.clip(np.searchsorted(edges, partial[:, 0].astype(np.int64), side="right") - 1, 0, size - 1)
        counts = np.bincount(window, weights=partial[:, 1], minlength=size).astype(np.int64)
        sums = np.zeros(size)
        np.add.at(sums, window, partial[:, 2])
        mins = np.full(size, np.inf)
        np.minimum.at(mins, window, partial[:, 3])
        maxs = np.full(size, -np.inf)
        np.maximum.at(maxs, window, partial[:, 4])
        empty = counts == 0
        mins[empty] = np.nan
        maxs[empty] = np.nan
        extremes = Extremes(int(low[0][0]), float(low[0][1]), int(high[0][0]), float(high[0][1]))
        return BucketStats(counts, sums, mins, maxs, extremes)

    def jumps(self, meter: Meter, *, start: int, end: int, interval: int) -> Jumps:
        # Grouping by the interval from the epoch gives the slots that hold a reading.
        where = self.client.meter_filter(meter.name, start, end)
        rows = self._rows(f"SELECT count(value) {where} GROUP BY time({int(interval)}s) fill(none)")
        return jumps_of(np.array([row[0] for row in rows], dtype=np.int64), interval)

def _all_local_midnights(epochs: list[int], zone: str) -> bool:
    tz = zoneinfo.ZoneInfo(zone)
    return all(datetime.fromtimestamp(e, tz).time() == time(0) for e in epochs)
