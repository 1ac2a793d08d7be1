"""Readings from the relational store (Django's database), with the work done in SQL."""
import json

import numpy as np
from django.db import DatabaseError, connection

from readings.models import Meter, Reading
from readings.sources.base import (
    BucketStats,
    Extremes,
    Jumps,
    MeterSummary,
    Series,
    SourceUnavailable,
)
from readings.sources.sql.dialect import MANY_ROWS, epoch_of, fetch_columns, is_postgresql, time_parameter

TABLE = Reading._meta.db_table
STORE = "the relational store"


def _unavailable(exc: DatabaseError) -> SourceUnavailable:
    return SourceUnavailable(f"{STORE} ({connection.vendor}) is unavailable: {exc}", store=STORE)


def _epoch_or_none(value) -> int | None:
    return int(value.timestamp()) if value else None


class SqlSource:
    """Serves the readings imported into the `Reading` table."""

    def __init__(self, *, alias: str):
        self.alias = alias

    def _query(self, sql: str, params) -> list[tuple]:
        try:
            with connection.cursor() as cursor:
                cursor.execute(sql, params)
                return cursor.fetchall()
        except DatabaseError as exc:
            raise _unavailable(exc) from exc

    def summary(self, meter: Meter) -> MeterSummary:
        # Kept by every write into the Reading table, so listing thousands of meters reads no readings.
        return MeterSummary(meter.reading_count, _epoch_or_none(meter.first_reading_at), _epoch_or_none(meter.last_reading_at))

    def read(self, meter: Meter, *, start: int, end: int, after: int | None, limit: int) -> Series:
        low, operator = (after, ">") if after is not None and after >= start else (start, ">=")
        try:
            times, values = fetch_columns(
                f"SELECT {epoch_of('time')}, value FROM {TABLE} "
                f"WHERE meter_id = %s AND time {operator} %s AND time < %s ORDER BY time LIMIT %s",
                [meter.pk, time_parameter(low), time_parameter(end), limit],
                many=limit > MANY_ROWS,
            )
        except DatabaseError as exc:
            raise _unavailable(exc) from exc
        return Series(times, values)

    def aggregate(self, meter: Meter, *, edges: np.ndarray, zone: str = "UTC") -> BucketStats:
        size = len(edges) - 1
        if is_postgresql():
            # width_bucket finds each row's bucket by binary search over the edges: one range scan.
            rows = self._query(
                f"SELECT width_bucket(EXTRACT(EPOCH FROM time), %s::double precision[]) - 1 AS bucket, "
                f"COUNT(*), SUM(value), MIN(value), MAX(value) FROM {TABLE} "
                "WHERE meter_id = %s AND time >= %s AND time < %s GROUP BY bucket",
                [edges.astype(float).tolist(), meter.pk, time_parameter(int(edges[0])), time_parameter(int(edges[-1]))],
            )
        else:
            # One index range scan per bucket, the buckets passed in as a JSON array.
            pairs = json.dumps(list(zip(edges[:-1].tolist(), edges[1:].tolist())))
            rows = self._query(
                "SELECT CAST(b.key AS INTEGER), COUNT(r.value), SUM(r.value), MIN(r.value), MAX(r.value) "
                f"FROM json_each(%s) AS b JOIN {TABLE} AS r ON r.meter_id = %s "
                "AND r.time >= datetime(json_extract(b.value, '$[0]'), 'unixepoch') "
                "AND r.time < datetime(json_extract(b.value, '$[1]'), 'unixepoch') "
                "GROUP BY b.key",
                [pairs, meter.pk],
            )
        stats = BucketStats.from_rows(size, rows)
        return stats.with_extremes(self._extremes(meter, edges, stats))

    def _extremes(self, meter: Meter, edges: np.ndarray, stats: BucketStats) -> Extremes | None:
        """The times of the range's extremes, looked up in the one bucket where each first
        occurs (the aggregate says which): a short scan of a bucket, not of the range."""
        buckets = stats.first_buckets_of_extremes()
        if buckets is None:
            return None
        low, high = buckets
        first_at = (
            f"(SELECT {epoch_of('time')} FROM {TABLE} WHERE meter_id = %s AND time >= %s AND time < %s "
            "AND value = %s ORDER BY time LIMIT 1)"
        )
        params = []
        for bucket, value in ((low, stats.mins[low]), (high, stats.maxs[high])):
            params += [meter.pk, time_parameter(int(edges[bucket])), time_parameter(int(edges[bucket + 1])), float(value)]
        low_time, high_time = self._query(f"SELECT {first_at}, {first_at}", params)[0]
        return Extremes(int(low_time), float(stats.mins[low]), int(high_time), float(stats.maxs[high]))

    def jumps(self, meter: Meter, *, start: int, end: int, interval: int) -> Jumps:
        # Each reading counts in its slot: its time floored to the interval (a floor, not SQL's
        # truncating division, so that times before 1970 land where numpy puts them too).
        epoch = epoch_of("time")
        slots = (
            f"SELECT DISTINCT {epoch} - (({epoch} %% %s) + %s) %% %s AS slot FROM {TABLE} "
            "WHERE meter_id = %s AND time >= %s AND time < %s"
        )
        params = [interval, interval, interval, meter.pk, time_parameter(start), time_parameter(end)]
        count, first, last = self._query(f"SELECT COUNT(*), MIN(slot), MAX(slot) FROM ({slots}) AS s", params)[0]
        pairs = self._query(
            "SELECT previous, slot FROM ("
            f"SELECT slot, LAG(slot) OVER (ORDER BY slot) AS previous FROM ({slots}) AS s"
            ") AS steps WHERE slot - previous > %s ORDER BY slot",
            [*params, interval],
        )
        return Jumps(count, first, last, [(int(a), int(b)) for a, b in pairs])
