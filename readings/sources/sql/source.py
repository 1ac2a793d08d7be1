"""Readings from the relational store (Django's database), with the work done in SQL."""
import json

import numpy as np
from django.db import DatabaseError, connection

from readings.models import Meter, Reading
from readings.sources.base import BucketStats, Extremes, Jumps, MeterSummary, Series, SourceUnavailable
from readings.sources.sql import rollups
from readings.sources.sql.dialect import epoch_of, fetch_columns, is_postgresql, time_parameter

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
            )
        except DatabaseError as exc:
            raise _unavailable(exc) from exc
        return Series(times, values)

    def aggregate(self, meter: Meter, *, edges: np.ndarray, zone: str = "UTC") -> BucketStats:
        # Long ranges of wide windows come from the hourly and daily rollups, where they pay.
        try:
            from_rollups = rollups.aggregate(meter.pk, edges)
        except DatabaseError as exc:
            raise _unavailable(exc) from exc
        if from_rollups is not None:
            return from_rollups
        if is_postgresql():
            return self._aggregate_postgresql(meter, edges)
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
        stats = BucketStats.from_rows(len(edges) - 1, rows)
        return stats.with_extremes(self._extremes(meter, edges, stats))

    def _aggregate_postgresql(self, meter: Meter, edges: np.ndarray) -> BucketStats:
        """One statement, one round trip: width_bucket finds each row's bucket by binary search over
        the edges in one range scan, then the extremes' times are looked up in the one bucket
        where each first occurs."""
        first_in_bucket = (
            f"(SELECT {epoch_of('r.time')} FROM {TABLE} AS r WHERE r.meter_id = %(meter)s "
            "AND r.time >= to_timestamp((%(edges)s::double precision[])[{0}.bucket + 1]) "
            "AND r.time < to_timestamp((%(edges)s::double precision[])[{0}.bucket + 2]) "
            # The range as constants too: TimescaleDB excludes chunks by them when it plans.
            "AND r.time >= %(start)s AND r.time < %(end)s "
            "AND r.value = {0}.{1} ORDER BY r.time LIMIT 1)"
        )
        rows = self._query(
            "WITH buckets AS ("
            "SELECT width_bucket(EXTRACT(EPOCH FROM time), %(edges)s::double precision[]) - 1 AS bucket, "
            "COUNT(*) AS count, SUM(value) AS total, MIN(value) AS low, MAX(value) AS high "
            f"FROM {TABLE} WHERE meter_id = %(meter)s AND time >= %(start)s AND time < %(end)s GROUP BY bucket), "
            "lowest AS (SELECT bucket, low FROM buckets ORDER BY low, bucket LIMIT 1), "
            "highest AS (SELECT bucket, high FROM buckets ORDER BY high DESC, bucket LIMIT 1) "
            "SELECT bucket, count, total, low, high, NULL::bigint FROM buckets "
            f"UNION ALL SELECT -1, 0, 0, low, 0, {first_in_bucket.format('lowest', 'low')} FROM lowest "
            f"UNION ALL SELECT -2, 0, 0, 0, high, {first_in_bucket.format('highest', 'high')} FROM highest",
            {
                # As array text: the driver quotes one string faster than it dumps a list of floats.
                "edges": "{" + ",".join(map(str, edges.tolist())) + "}", "meter": meter.pk,
                "start": time_parameter(int(edges[0])), "end": time_parameter(int(edges[-1])),
            },
        )
        stats = BucketStats.from_rows(len(edges) - 1, [row[:5] for row in rows if row[0] >= 0])
        extremes = {row[0]: row for row in rows if row[0] < 0}
        if not extremes:
            return stats
        low, high = extremes[-1], extremes[-2]
        return stats.with_extremes(Extremes(int(low[5]), float(low[3]), int(high[5]), float(high[4])))

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
