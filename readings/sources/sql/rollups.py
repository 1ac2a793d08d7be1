"""Hourly and daily rollups of the readings: each meter's count, sum, minimum and maximum per UTC
hour and per UTC day, kept by every write and read by aggregates over long ranges.

The read side splits each window [a, b) into pieces: the whole UTC days inside it, the whole UTC
hours at its ragged ends and, for what is left (the quarter hours of a +05:45 zone, a range that
starts at 10:07), the raw readings. Sums, counts, minima and maxima of disjoint pieces combine
exactly into the window's, so the answer is the raw computation's for any zone and any edges (sums
may differ in the last bits: floating-point addition in another order). The times of the extremes
are looked up in the raw readings of the one hour or day where each first occurs.

The write side recomputes, in the write's transaction, the hours and days its rows fall in from
the raw readings (days from hours), so a reader never sees a reading without its rollup.
"""
import json
from collections.abc import Mapping
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
from django.db import connection, transaction

from readings.models import DailyRollup, HourlyRollup, Reading
from readings.sources.base import BucketStats, Extremes
from readings.sources.sql import timescale
from readings.sources.sql.dialect import epoch_of, is_postgresql, time_of, time_parameter

HOUR, DAY = HourlyRollup.WIDTH, DailyRollup.WIDTH
RAW, HOURLY, DAILY = 0, 1, 2
WIDTHS = {HOURLY: HOUR, DAILY: DAY}
TABLE = Reading._meta.db_table
ROLLUP_TABLES = {HOURLY: HourlyRollup._meta.db_table, DAILY: DailyRollup._meta.db_table}

# Rollups answer a range when their pieces cover at least this much of it, in pieces of this much
# on average. Below, one range scan of the raw readings costs no more than a probe a piece: a month
# of days took 2.2 ms raw and 3.5 ms from rollups on PostgreSQL, a year of days 36 ms and 5 ms.
ROLLUP_FROM_SECONDS = 62 * DAY
ROLLUP_PIECE_SECONDS = 6 * HOUR
# More readings than a raw piece (under two hours) can hold at the shortest interval, a second.
MAX_RAW_PIECE_ROWS = 2 * HOUR


@dataclass(frozen=True)
class Pieces:
    """Disjoint pieces covering a range in time order: each one's window, kind and [lo, hi)."""

    buckets: np.ndarray
    kinds: np.ndarray
    los: np.ndarray
    his: np.ndarray

    def worth_it(self) -> bool:
        rolled = self.kinds != RAW
        if not rolled.any():
            return False
        covered = int((self.his[rolled] - self.los[rolled]).sum())
        return covered >= ROLLUP_FROM_SECONDS and covered / int(rolled.sum()) >= ROLLUP_PIECE_SECONDS

    def of_bucket(self, bucket: int) -> "Pieces":
        return self.only(self.buckets == bucket)

    def only(self, mask: np.ndarray) -> "Pieces":
        return Pieces(self.buckets[mask], self.kinds[mask], self.los[mask], self.his[mask])


def _floor(t: np.ndarray, width: int) -> np.ndarray:
    return t - t % width  # numpy's % is a floor modulo: right for times before 1970 too


def plan(edges: np.ndarray, stale: list[tuple[int, int]] = ()) -> Pieces:
    """The pieces of the windows between `edges`. Rollup pieces overlapping a `stale` span (one
    whose rollups are not known to be fresh) are read raw instead."""
    edges = np.asarray(edges, dtype=np.int64)
    a, b = edges[:-1], edges[1:]
    h1, h2 = _floor(a + HOUR - 1, HOUR), _floor(b, HOUR)
    d1, d2 = _floor(a + DAY - 1, DAY), _floor(b, DAY)
    hours, days = h1 < h2, d1 < d2
    # Cut points a ≤ h1 ≤ d1 ≤ d2 ≤ h2 ≤ b; pieces raw, hour, day, hour, raw between them (empty
    # ones dropped). No whole day: the hours run h1 to h2. No whole hour: one raw piece.
    d1 = np.where(days, d1, np.where(hours, h2, b))
    d2 = np.where(days, d2, d1)
    h1 = np.where(hours, h1, b)
    h2 = np.where(hours, h2, b)
    cuts = np.stack([a, h1, d1, d2, h2, b], axis=1)
    los, his = cuts[:, :-1].ravel(), cuts[:, 1:].ravel()
    kinds = np.tile(np.array([RAW, HOURLY, DAILY, HOURLY, RAW]), len(a))
    buckets = np.repeat(np.arange(len(a)), 5)
    keep = los < his
    pieces = Pieces(buckets[keep], kinds[keep], los[keep], his[keep])
    for lo, hi in stale:
        pieces.kinds[(pieces.kinds != RAW) & (pieces.los < hi) & (pieces.his > lo)] = RAW
    return pieces


# ---- reading ---------------------------------------------------------------------------------


def aggregate(meter_id: int, edges: np.ndarray) -> BucketStats | None:
    """The windows' stats and extremes from the rollups, or None where they would not pay."""
    with _one_snapshot():
        return _aggregate(meter_id, edges)


@contextmanager
def _one_snapshot():
    """On PostgreSQL, every statement of an aggregate reads the store as of one moment: a write
    committing between them could otherwise leave a minimum whose reading is no longer there, or
    stale spans that no longer match the rollups read. SQLite's transactions here take the write
    lock (IMMEDIATE), which readers must not: there a lookup that finds its extreme gone makes the
    aggregate read the raw readings instead (see `_first_time_of`)."""
    if not is_postgresql() or connection.in_atomic_block:
        yield
        return
    with transaction.atomic():
        with connection.cursor() as cursor:
            # No JIT: these are index lookups whose plans can still be costed high (probes of many
            # pieces), and compiling took a second where running takes milliseconds.
            cursor.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY")
            cursor.execute("SET LOCAL jit = off")
        yield


def _aggregate(meter_id: int, edges: np.ndarray) -> BucketStats | None:
    pieces = plan(edges, stale_spans(meter_id, int(edges[0]), int(edges[-1])))
    if not pieces.worth_it():
        return None
    with connection.cursor() as cursor:
        rows, params = _rows_sql("bucket", meter_id, pieces)
        cursor.execute(f"SELECT bucket, SUM(count), SUM(total), MIN(low), MAX(high) FROM ({rows}) AS r GROUP BY bucket", params)
        stats = BucketStats.from_rows(len(edges) - 1, cursor.fetchall())
        firsts = stats.first_buckets_of_extremes()
        if firsts is None:
            return stats
        low, high = firsts
        low_value, high_value = float(stats.mins[low]), float(stats.maxs[high])
        low_time = _first_time_of(cursor, meter_id, pieces.of_bucket(low), "low", low_value)
        high_time = _first_time_of(cursor, meter_id, pieces.of_bucket(high), "high", high_value)
        if low_time is None or high_time is None:
            return None  # a write moved an extreme between the statements (SQLite): read raw
        return stats.with_extremes(Extremes(low_time, low_value, high_time, high_value))


def _first_time_of(cursor, meter_id: int, pieces: Pieces, column: str, value: float) -> int | None:
    """The earliest time of `value` in `pieces`: the first piece row that holds it, then, for a
    rollup row, the raw readings of its hour or day."""
    rows, params = _rows_sql("kind, start", meter_id, pieces)
    cursor.execute(f"SELECT kind, start FROM ({rows}) AS r WHERE {column} = %s ORDER BY start LIMIT 1", [*params, value])
    found = cursor.fetchone()
    if found is None:
        return None
    kind, start = found
    if kind == RAW:
        return int(start)
    cursor.execute(
        f"SELECT {epoch_of('time')} FROM {TABLE} WHERE meter_id = %s AND time >= %s AND time < %s AND value = %s "
        "ORDER BY time LIMIT 1",
        [meter_id, *_times(int(start), int(start) + WIDTHS[kind]), value],
    )
    found = cursor.fetchone()
    return None if found is None else int(found[0])


def _times(*epochs: int) -> list:
    return [time_parameter(epoch) for epoch in epochs]


def _rows_sql(columns: str, meter_id: int, pieces: Pieces) -> tuple[str, list]:
    """SQL of the rows of `pieces` and its parameters: rollup rows of the hour and day pieces,
    raw readings (as rows of one) of the others; `columns` of bucket, kind, start, count, total,
    low, high."""
    hour, day = rollup_relations()
    rows = [pieces.buckets, pieces.kinds, pieces.los, pieces.his]
    if is_postgresql():
        listed = ["{" + ",".join(map(str, column.tolist())) + "}" for column in rows]
        table = "(SELECT * FROM unnest(%s::int[], %s::int[], %s::bigint[], %s::bigint[])) AS p (bucket, kind, lo, hi)"
        join = "JOIN"
    else:
        listed = [json.dumps(np.stack(rows, axis=1).tolist())]
        table = (
            "(SELECT json_extract(value, '$[0]') AS bucket, json_extract(value, '$[1]') AS kind, "
            "json_extract(value, '$[2]') AS lo, json_extract(value, '$[3]') AS hi FROM json_each(%s)) AS p"
        )
        # SQLite's CROSS JOIN keeps the pieces the outer loop: one index probe a piece, not a scan
        # of the meter's rows for each.
        join = "CROSS JOIN"
    if is_postgresql():
        # One probe of the (meter_id, start) key a piece (OFFSET 0 keeps the subquery a subquery):
        # joined, the planner filtered every row of the meter for each piece instead (a year of
        # days from TimescaleDB's aggregates: 146,000 comparisons, 15-30 ms).
        rolled = (
            "SELECT p.bucket, p.kind, x.start, x.count, x.total, x.low, x.high FROM {table} CROSS JOIN LATERAL "
            "(SELECT * FROM {rollups} AS r WHERE r.meter_id = %s AND r.start >= p.lo AND r.start < p.hi OFFSET 0) AS x "
            "WHERE p.kind = {kind}"
        )
    else:
        rolled = (
            "SELECT p.bucket, p.kind, x.start, x.count, x.total, x.low, x.high FROM {table} "
            "{join} {rollups} AS x ON x.meter_id = %s AND x.start >= p.lo AND x.start < p.hi WHERE p.kind = {kind}"
        )
    on_timescale = is_postgresql() and timescale.catalog() is not None
    # Each branch's SQL and whether it takes the pieces' parameters (before the meter id's).
    branches = {
        DAILY: (rolled.format(table=table, join=join, rollups=day, kind=DAILY), True),
        HOURLY: (rolled.format(table=table, join=join, rollups=hour, kind=HOURLY), True),
    }
    if on_timescale:
        for kind, relation in ((DAILY, day), (HOURLY, hour)):
            mine = pieces.kinds == kind
            if mine.any():
                branches[kind] = timescale.rolled_pieces_sql(kind=kind, relation=relation, pieces=pieces.only(mine)), False
    # Named: the union takes its columns' names from its first branch, which may be this one.
    raw = (
        f"SELECT p.bucket, p.kind, {epoch_of('x.time')} AS start, 1 AS count, x.value AS total, x.value AS low, "
        "x.value AS high FROM "
    )
    if is_postgresql():
        # Ordered and limited, a piece's readings are read from the (meter, time) key: PostgreSQL
        # cannot estimate a piece's span before it runs, and took the BRIN index of time instead
        # (every meter's rows in the block ranges, a thousand times slower). The raw pieces' span
        # as constants too: TimescaleDB excludes chunks by them when it plans (by the pieces' own
        # bounds only as it runs, after planning every chunk of the table).
        raw_pieces = pieces.kinds == RAW
        span = (
            f"AND time >= {time_of(str(int(pieces.los[raw_pieces].min())))} "
            f"AND time < {time_of(str(int(pieces.his[raw_pieces].max())))} "
        ) if raw_pieces.any() else ""
        branches[RAW] = (
            f"{raw}{table} CROSS JOIN LATERAL (SELECT time, value FROM {TABLE} WHERE meter_id = %s "
            f"AND time >= {time_of('p.lo')} AND time < {time_of('p.hi')} {span}ORDER BY time LIMIT {MAX_RAW_PIECE_ROWS}) AS x "
            f"WHERE p.kind = {RAW}"
        ), True
        if raw_pieces.any() and on_timescale:
            branches[RAW] = timescale.raw_pieces_sql(kind=RAW, pieces=pieces.only(raw_pieces), span=span), False
    else:
        branches[RAW] = (
            f"{raw}{table} {join} {TABLE} AS x ON x.meter_id = %s AND x.time >= {time_of('p.lo')} "
            f"AND x.time < {time_of('p.hi')} WHERE p.kind = {RAW}"
        ), True
    # Only the kinds the pieces have: each branch planned costs, on TimescaleDB a plan of chunks.
    present = [kind for kind in (DAILY, HOURLY, RAW) if (pieces.kinds == kind).any()] or [RAW]
    sql = [branches[kind][0] for kind in present]
    params = [x for kind in present for x in ((*listed, meter_id) if branches[kind][1] else (meter_id,))]
    return f"SELECT {columns}, count, total, low, high FROM (" + " UNION ALL ".join(sql) + ") AS rows", params


def rollup_relations() -> tuple[str, str]:
    """The relations holding the hourly and the daily rollups: on TimescaleDB its continuous
    aggregates, elsewhere the rollup tables."""
    if timescale.catalog() is not None:
        return timescale.rollup_relations()
    return ROLLUP_TABLES[HOURLY], ROLLUP_TABLES[DAILY]


def stale_spans(meter_id: int, start: int, end: int) -> list[tuple[int, int]]:
    """Spans of [start, end) whose rollups are not known to match the raw readings: on TimescaleDB
    where its invalidation logs say so (see readings/sources/sql/timescale.py); none elsewhere,
    where every write keeps them in its own transaction."""
    if timescale.catalog() is not None:
        return timescale.stale_spans(start=start, end=end)
    return []


# ---- writing ---------------------------------------------------------------------------------


def keep_rollups(cursor, staging_table: str, spans: Mapping[int, tuple[int, int, int]], *, fresh: bool = False) -> None:
    """Recompute the hours, then the days, that the staged rows of a write fall in; `spans` is
    each staged meter's rows, first and last epoch.

    With `fresh` (the staged spans held no reading before this write: a new meter's file), the
    hours inside each span are summed from the staging table, which holds every reading they now
    have, and only the two at its ends from the store. Otherwise they come from the store's
    readings (the write's own included): a meter whose rows fill their span (a file) over
    its span in one range scan, one whose rows are scattered (a late correction beside today's
    reading) over the hours of its rows only. Days are summed from their hours."""
    if not spans or timescale.catalog() is not None:
        # On TimescaleDB the continuous aggregates stand in for the tables (refreshed after commit).
        return
    upsert = (
        "ON CONFLICT (meter_id, start) DO UPDATE SET count = excluded.count, total = excluded.total, "
        "low = excluded.low, high = excluded.high"
    )
    for kind, width in ((HOURLY, HOUR), (DAILY, DAY)):
        into = f"INSERT INTO {ROLLUP_TABLES[kind]} (meter_id, start, count, total, low, high) "
        # Days always come from the hours just kept: a quarter of the rows the staging table holds.
        if fresh and kind == HOURLY:
            inside = {m: (first - first % width + width, last - last % width) for m, (_, first, last) in spans.items()}
            inside = {m: bounds for m, bounds in inside.items() if bounds[0] < bounds[1]}
            if inside:
                bounds, params = _values(inside)
                cursor.execute(
                    f"{into}SELECT s.meter_id, {_floor_sql('s.epoch', width)} AS bucket_start, COUNT(*), SUM(s.value), "
                    f"MIN(s.value), MAX(s.value) FROM {staging_table} AS s JOIN ({bounds}) AS g ON s.meter_id = g.meter_id "
                    f"AND s.epoch >= g.lo AND s.epoch < g.hi WHERE true GROUP BY s.meter_id, bucket_start {upsert}",
                    params,
                )
            ranges, params = _values({
                (m, end): (t - t % width, t - t % width + width)
                for m, (_, first, last) in spans.items() for end, t in (("first", first), ("last", last))
                if end == "first" or (last - last % width) != (first - first % width)
            })
        else:
            ranges, params = _ranges(staging_table, spans, width)
        if kind == HOURLY:
            source, start_of, fields = TABLE, _floor_sql(epoch_of("x.time"), HOUR), "COUNT(*), SUM(x.value), MIN(x.value), MAX(x.value)"
            within = f"x.time >= {time_of('g.lo')} AND x.time < {time_of('g.hi')}"
        else:
            source, start_of, fields = ROLLUP_TABLES[HOURLY], _floor_sql("x.start", DAY), "SUM(x.count), SUM(x.total), MIN(x.low), MAX(x.high)"
            within = "x.start >= g.lo AND x.start < g.hi"
        cursor.execute(
            f"{into}SELECT x.meter_id, {start_of} AS bucket_start, {fields} FROM ({ranges}) AS g "
            f"JOIN {source} AS x ON x.meter_id = g.meter_id AND {within} WHERE true GROUP BY x.meter_id, bucket_start {upsert}",
            params,
        )


def _floor_sql(epoch_sql: str, width: int) -> str:
    # SQL's % truncates toward zero; adding the width once more floors times before 1970 too.
    return f"({epoch_sql} - (({epoch_sql} %% {width}) + {width}) %% {width})"


def _values(bounds: Mapping) -> tuple[str, list]:
    """SQL of (meter_id, lo, hi) rows from {meter id (or (meter id, anything)): (lo, hi)}."""
    sql = " UNION ALL ".join(
        ["SELECT CAST(%s AS BIGINT) AS meter_id, CAST(%s AS BIGINT) AS lo, CAST(%s AS BIGINT) AS hi"] * len(bounds)
    )
    params = []
    for key, (lo, hi) in bounds.items():
        params += [key[0] if isinstance(key, tuple) else key, lo, hi]
    return sql, params


def _ranges(staging_table: str, spans: Mapping[int, tuple[int, int, int]], width: int) -> tuple[str, list]:
    """SQL of (meter_id, lo, hi) epoch ranges to recompute at `width`, and its parameters."""
    dense = {
        m: (first - first % width, last - last % width + width)
        for m, (rows, first, last) in spans.items() if (last - first) // width < rows
    }
    sparse = [m for m in spans if m not in dense]
    parts, params = [], []
    if dense:
        sql, params = _values(dense)
        parts.append(sql)
    if sparse:
        start = _floor_sql("epoch", width)
        parts.append(
            f"SELECT DISTINCT meter_id, {start} AS lo, {start} + {width} AS hi FROM {staging_table} "
            f"WHERE meter_id IN ({', '.join(['%s'] * len(sparse))})"
        )
        params += sparse
    return " UNION ALL ".join(parts), params


def rebuild_rollups(meter_ids: list[int] | None = None) -> None:
    """Recompute every rollup (of `meter_ids`, or of all meters) from the raw readings: after rows
    were loaded around the write path (a bulk COPY), or to check them."""
    if timescale.catalog() is not None:
        # The continuous aggregates, rematerialized where the raw rows changed, once committed.
        timescale.refresh_all_after_commit()
        return
    where, params = ("WHERE meter_id IN (" + ", ".join(["%s"] * len(meter_ids)) + ")", list(meter_ids)) if meter_ids else ("", [])
    with connection.cursor() as cursor:
        for table in ROLLUP_TABLES.values():
            cursor.execute(f"DELETE FROM {table} {where}", params)
        cursor.execute(
            f"INSERT INTO {ROLLUP_TABLES[HOURLY]} (meter_id, start, count, total, low, high) "
            f"SELECT meter_id, {_floor_sql(epoch_of('time'), HOUR)} AS bucket_start, COUNT(*), SUM(value), MIN(value), MAX(value) "
            f"FROM {TABLE} {where} GROUP BY meter_id, bucket_start",
            params,
        )
        cursor.execute(
            f"INSERT INTO {ROLLUP_TABLES[DAILY]} (meter_id, start, count, total, low, high) "
            f"SELECT meter_id, {_floor_sql('start', DAY)} AS bucket_start, SUM(count), SUM(total), MIN(low), MAX(high) "
            f"FROM {ROLLUP_TABLES[HOURLY]} {where} GROUP BY meter_id, bucket_start",
            params,
        )
