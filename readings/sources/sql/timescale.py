"""The relational store on TimescaleDB: its rollups of UTC hours and days come from the continuous
aggregates that migration 0015 makes, with the spans where those may differ from the raw rows.

How an answer from the aggregates is known to equal the raw rows' (TimescaleDB 2.28,
tsl/src/continuous_aggs/): an aggregate is materialized below its watermark
(`_timescaledb_functions.cagg_watermark`), and its real-time view computes every bucket at or above
the watermark from the raw rows, in the same statement. A write into the readings hypertable below
its invalidation threshold (which a refresh moves to the end of what it materialized, so at or
above every watermark) appends [lowest, greatest] of the times it wrote (inclusive, Unix
microseconds) to the hypertable invalidation log at commit; a refresh moves those entries into each
aggregate's materialization invalidation log (widened to whole buckets) and deletes the entries it
rematerialized, in the transaction that writes the new rows. So a materialized bucket differs from
its raw rows only where an entry of either log covers it: those spans, below the watermark, are
the stale ones. Rows, watermark and both logs are read in one statement (one snapshot; the
watermark is read with the transaction snapshot too), so they describe one state of the store.

Totals are sums of floats: an aggregate adds a bucket's values in the order it read them, so a
total can differ from another order's sum in its last bits; counts and extremes are exact.

The write side: a write that reached below a watermark is refreshed after it commits
(`refresh_after_commit`), hourly first, then daily, so that reads are fast again; until then the
stale spans keep them exact.
"""
import logging
import weakref
from dataclasses import dataclass

import numpy as np
from django.db import DatabaseError, connection, transaction

from readings.sources.sql.dialect import is_postgresql

logger = logging.getLogger(__name__)

READINGS = "readings_reading"
HOUR, DAY = 3600, 86400
AGGREGATES = {HOUR: "readings_reading_hour", DAY: "readings_reading_day"}
# A write reaching further back than this is left to the refresh policies (a refresh
# rematerializes every meter's buckets in its window); reads stay exact meanwhile.
REFRESH_AT_ONCE_SECONDS = 31 * DAY
MICROSECONDS = 1_000_000


@dataclass(frozen=True)
class Catalog:
    """The hypertable ids TimescaleDB keeps for the readings and their aggregates."""

    readings: int
    aggregates: dict[int, int]  # width (seconds) → the aggregate's materialization hypertable id


@dataclass(frozen=True)
class Rollups:
    """One meter's buckets of one width, in order of `starts` (UTC epoch seconds), and the spans
    (epoch pairs, start inclusive, end exclusive, ascending and disjoint) where they are not
    known to equal the raw rows."""

    starts: np.ndarray
    counts: np.ndarray
    totals: np.ndarray
    lows: np.ndarray
    highs: np.ndarray
    stale: list[tuple[int, int]]


# Per database connection (the driver's, which a reconnect replaces): its Catalog, or None.
_catalogs: "weakref.WeakKeyDictionary[object, Catalog | None]" = weakref.WeakKeyDictionary()


def catalog() -> Catalog | None:
    """The readings' TimescaleDB catalog when this connection's database has the extension and
    migration 0015's aggregates, else None; asked once per connection."""
    if not is_postgresql():
        return None
    connection.ensure_connection()
    raw = connection.connection
    try:
        return _catalogs[raw]
    except KeyError:
        pass
    found = _find_catalog()
    _catalogs[raw] = found
    return found


def forget_catalog() -> None:
    """Ask again on this connection's next use (after migrating, say)."""
    if connection.connection is not None:
        _catalogs.pop(connection.connection, None)


def _find_catalog() -> Catalog | None:
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1 FROM pg_extension WHERE extname = 'timescaledb'")
        if cursor.fetchone() is None:
            return None
        cursor.execute(
            "SELECT h.id, a.user_view_name, a.mat_hypertable_id FROM _timescaledb_catalog.hypertable AS h "
            "LEFT JOIN _timescaledb_catalog.continuous_agg AS a ON a.raw_hypertable_id = h.id "
            "AND a.user_view_schema = h.schema_name WHERE h.table_name = %s AND h.schema_name = current_schema()",
            [READINGS],
        )
        rows = cursor.fetchall()
    views = {name: mat_id for _, name, mat_id in rows if name}
    if not rows or any(name not in views for name in AGGREGATES.values()):
        return None
    return Catalog(readings=rows[0][0], aggregates={width: views[name] for width, name in AGGREGATES.items()})


def rollups(*, meter_id: int, width: int, start: int, end: int) -> Rollups:
    """The buckets of `width` (HOUR or DAY) of one meter that start in [start, end), from its
    continuous aggregate, and the spans within [start, end) to read from the raw rows instead."""
    found = catalog()
    if found is None:
        raise LookupError("this database has no TimescaleDB aggregates of readings")
    mat_id = found.aggregates[width]
    view = AGGREGATES[width]
    # Log entries are inclusive Unix microseconds; a stale bucket is any bucket an entry touches.
    sql = (
        "WITH mark AS (SELECT COALESCE(_timescaledb_functions.cagg_watermark(%(mat)s), -9223372036854775808) AS w), "
        "entries AS ("
        "SELECT lowest_modified_value AS lo, greatest_modified_value AS hi "
        "FROM _timescaledb_catalog.continuous_aggs_hypertable_invalidation_log "
        "WHERE hypertable_id = %(raw)s AND lowest_modified_value < %(end_us)s AND greatest_modified_value >= %(start_us)s "
        "UNION ALL SELECT lowest_modified_value, greatest_modified_value "
        "FROM _timescaledb_catalog.continuous_aggs_materialization_invalidation_log "
        "WHERE materialization_id = %(mat)s AND lowest_modified_value < %(end_us)s AND greatest_modified_value >= %(start_us)s), "
        # Only below the watermark: above it the view reads the raw rows itself.
        "stale AS (SELECT floor(GREATEST(lo, %(start_us)s) / 1000000.0)::bigint AS lo, "
        "floor(LEAST(hi, (SELECT w FROM mark) - 1, %(end_us)s - 1) / 1000000.0)::bigint AS hi "
        "FROM entries WHERE lo < (SELECT w FROM mark)), "
        "rows AS (SELECT EXTRACT(EPOCH FROM start)::bigint AS s, count::bigint AS c, total, low, high "
        f"FROM {view} WHERE meter_id = %(meter)s AND start >= to_timestamp(%(start)s) AND start < to_timestamp(%(end)s) ORDER BY start) "
        "SELECT (SELECT string_agg(int8send(s), '') FROM rows), (SELECT string_agg(int8send(c), '') FROM rows), "
        "(SELECT string_agg(float8send(total), '') FROM rows), (SELECT string_agg(float8send(low), '') FROM rows), "
        "(SELECT string_agg(float8send(high), '') FROM rows), "
        "(SELECT array_agg(ARRAY[lo, hi] ORDER BY lo) FROM stale WHERE lo <= hi)"
    )
    params = {
        "mat": mat_id, "raw": found.readings, "meter": meter_id, "start": start, "end": end,
        "start_us": start * MICROSECONDS, "end_us": end * MICROSECONDS,
    }
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        starts, counts, totals, lows, highs, entries = cursor.fetchone()
    columns = [
        np.frombuffer(packed or b"", dtype=wire).astype(kind)
        for packed, wire, kind in (
            (starts, ">i8", np.int64), (counts, ">i8", np.int64),
            (totals, ">f8", np.float64), (lows, ">f8", np.float64), (highs, ">f8", np.float64),
        )
    ]
    if len(columns[0]) > 1 and not np.all(np.diff(columns[0]) > 0):
        order = np.argsort(columns[0], kind="stable")
        columns = [column[order] for column in columns]
    return Rollups(*columns, stale=_whole_buckets(entries or [], width=width, start=start, end=end))


def _whole_buckets(entries, *, width: int, start: int, end: int) -> list[tuple[int, int]]:
    """Inclusive second spans widened to the buckets they touch, clipped to [start, end), merged."""
    spans = []
    for lo, hi in sorted((int(lo), int(hi)) for lo, hi in entries):
        a = max(start, lo - lo % width)
        b = min(end, hi - hi % width + width)
        if a >= b:
            continue
        if spans and a <= spans[-1][1]:
            spans[-1] = (spans[-1][0], max(spans[-1][1], b))
        else:
            spans.append((a, b))
    return spans


def allow_decompression(cursor) -> None:
    """Let this transaction write into compressed chunks as much as it needs: TimescaleDB refuses
    DML that decompresses more than 100,000 rows in a transaction by default, which a late import
    of many meters' corrections passes. The write path bounds its statements by the meters and
    span it writes, so only their batches are decompressed."""
    if catalog() is not None:
        cursor.execute("SET LOCAL timescaledb.max_tuples_decompressed_per_dml_transaction = 0")


def refresh_after_commit(*, first: int, last: int) -> None:
    """Once the current transaction commits, refresh the aggregates over [first, last] (epoch
    seconds of the rows written) where that lies below their watermarks: hourly, then daily.
    Outside the transaction, as TimescaleDB requires; a failure is logged, not raised (the write
    has committed, the refresh policy comes by, and reads stay exact meanwhile)."""
    if catalog() is None:
        return
    transaction.on_commit(lambda: refresh(first=first, last=last))


def refresh(*, first: int, last: int) -> None:
    """Rematerialize the aggregates' buckets that hold [first, last] (epoch seconds), below each
    watermark; a span longer than REFRESH_AT_ONCE_SECONDS is left to the policies."""
    found = catalog()
    if found is None or last - first > REFRESH_AT_ONCE_SECONDS:
        return
    for width, view in AGGREGATES.items():
        try:
            with connection.cursor() as cursor:
                cursor.execute(
                    "SELECT floor(_timescaledb_functions.cagg_watermark(%s) / 1000000.0)::bigint", [found.aggregates[width]]
                )
                (watermark,) = cursor.fetchone()
                low = first - first % width
                high = min(last - last % width + width, watermark)
                if low < high:
                    cursor.execute(
                        "CALL refresh_continuous_aggregate(%s, to_timestamp(%s), to_timestamp(%s))", [view, low, high]
                    )
        except DatabaseError:
            logger.warning("refreshing %s over [%s, %s] failed; its refresh policy will", view, first, last, exc_info=True)
