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
    materialized: dict[int, str]  # width → that hypertable, schema-qualified


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
            "SELECT h.id, a.user_view_name, a.mat_hypertable_id, quote_ident(m.schema_name) || '.' || quote_ident(m.table_name) "
            "FROM _timescaledb_catalog.hypertable AS h "
            "LEFT JOIN _timescaledb_catalog.continuous_agg AS a ON a.raw_hypertable_id = h.id AND a.user_view_schema = h.schema_name "
            "LEFT JOIN _timescaledb_catalog.hypertable AS m ON m.id = a.mat_hypertable_id "
            "WHERE h.table_name = %s AND h.schema_name = current_schema()",
            [READINGS],
        )
        rows = cursor.fetchall()
    views = {name: (mat_id, table) for _, name, mat_id, table in rows if name}
    if not rows or any(name not in views for name in AGGREGATES.values()):
        return None
    return Catalog(
        readings=rows[0][0],
        aggregates={width: views[name][0] for width, name in AGGREGATES.items()},
        materialized={width: views[name][1] for width, name in AGGREGATES.items()},
    )


def rollup_relations() -> tuple[str, str]:
    """The hourly and daily aggregates' materialized rows as relations of (meter_id, start, count,
    total, low, high), `start` in epoch seconds, as readings/sources/sql/rollups.py reads its
    tables: their materialization hypertables, read by TimescaleDB's (meter_id, bucket) index
    within bounds on `bucket` (see `rolled_pieces_sql`; the real-time views, a union with an
    aggregate, cannot be probed, and a year of days read every row of the meter for each day: 46
    ms instead of a few). Above the watermark there are
    no rows; `stale_spans` sends that part to the raw rows, as the real-time view would."""
    found = _required_catalog()
    return found.materialized[HOUR], found.materialized[DAY]


def _in_pieces(*, kind: int, pieces, source: str) -> str:
    """Rows of `source` (a subquery of start, in epoch seconds, count, total, low, high) put in
    their pieces (`pieces`, of one kind, disjoint) by binary search over the pieces' starts, rows
    between pieces dropped. The pieces are array constants, so that no join with them is planned
    (joined, the scan of the store was rerun for every piece when the planner took the pieces
    for one row)."""
    order = np.argsort(pieces.los, kind="stable")
    buckets, los, his = (_bigints(values[order]) for values in (pieces.buckets, pieces.los, pieces.his))
    return (
        f"SELECT ({buckets})[x.i]::int AS bucket, {int(kind)} AS kind, x.start, x.count, x.total, x.low, x.high "
        f"FROM (SELECT y.*, width_bucket(y.start, {los}) AS i FROM ({source}) AS y) AS x "
        f"WHERE x.i > 0 AND x.start < ({his})[x.i]"
    )


def _bigints(values: np.ndarray) -> str:
    """Integers as an SQL bigint[] constant."""
    return "'{" + ",".join(str(int(v)) for v in values.tolist()) + "}'::bigint[]"


def _dense(pieces) -> bool:
    """Whether `pieces` fill at least half of their whole span: then one scan of the span reads
    little more than the pieces hold."""
    return int((pieces.his - pieces.los).sum()) * 2 >= int(pieces.his.max()) - int(pieces.los.min())


def raw_pieces_sql(*, kind: int, pieces, span: str) -> str:
    """The rollups read path's raw pieces (of `kind`) on TimescaleDB (columns bucket, kind, start,
    count, total, low, high; parameter: the meter id): the meter's readings over the raw pieces'
    `span` in one scan, each put in its piece. A probe a piece, as on PostgreSQL, decompresses a
    batch of a compressed chunk for each (a year of +05:45 days: 730 batches, 612 ms); one scan
    decompresses each batch once."""
    source = (
        "SELECT EXTRACT(EPOCH FROM time)::bigint AS start, 1 AS count, value AS total, value AS low, value AS high "
        f"FROM {READINGS} WHERE meter_id = %s {span}"
    )
    return _in_pieces(kind=kind, pieces=pieces, source=source)


def rolled_pieces_sql(*, kind: int, relation: str, pieces) -> str:
    """The rollups read path's pieces of `kind` from an aggregate's materialization hypertable
    `relation` (parameter: the meter id). The pieces' whole span bounds `bucket`, the
    hypertable's partitioning column, as constants, so that only the chunks holding it are
    planned: by the `start` key alone, each probe of a year of days visited all 54 chunks of ten
    years (17 ms, now 5). Pieces that fill most of their span (the days of a year) are read in one
    range scan; scattered ones (the hours at the ends of ten years of months) by a probe a run of
    adjacent pieces (a month's last hours and the next one's first), each bounded by its buckets,
    which TimescaleDB excludes chunks by as it runs (each probe still costs about 0.15 ms of
    that). Either way each row is put in its piece by `_in_pieces`. (Listing the scattered buckets
    took 100 ms to plan for ten years of Berlin months, a statement a piece 440 ms for +05:45.)"""
    lo, hi = int(pieces.los.min()), int(pieces.his.max())
    span = f"r.meter_id = %s AND r.bucket >= to_timestamp({lo}) AND r.bucket < to_timestamp({hi})"
    if _dense(pieces):
        source = f"SELECT r.start, r.count, r.total, r.low, r.high FROM {relation} AS r WHERE {span}"
        return _in_pieces(kind=kind, pieces=pieces, source=source)
    order = np.argsort(pieces.los, kind="stable")
    los, his = pieces.los[order], pieces.his[order]
    # A run starts where a piece does not begin at the end of the one before.
    starts = np.flatnonzero(np.r_[True, los[1:] != his[:-1]])
    ends = np.r_[starts[1:], len(los)] - 1
    source = (
        f"SELECT x.start, x.count, x.total, x.low, x.high "
        f"FROM unnest({_bigints(los[starts])}, {_bigints(his[ends])}) AS g (lo, hi) "
        f"CROSS JOIN LATERAL (SELECT * FROM {relation} AS r WHERE {span} "
        "AND r.bucket >= to_timestamp(g.lo) AND r.bucket < to_timestamp(g.hi) OFFSET 0) AS x"
    )
    return _in_pieces(kind=kind, pieces=pieces, source=source)


def _stale_sql(width: int, found: Catalog) -> str:
    """SQL of the stale second spans [lo, hi] (inclusive) of the aggregate of `width` within
    [%(start_us)s, %(end_us)s), below its watermark."""
    mat_id = found.aggregates[width]
    # Log entries are inclusive Unix microseconds.
    sql = (
        f"(WITH mark AS (SELECT COALESCE(_timescaledb_functions.cagg_watermark({mat_id}), -9223372036854775808) AS w), "
        "entries AS ("
        "SELECT lowest_modified_value AS lo, greatest_modified_value AS hi "
        "FROM _timescaledb_catalog.continuous_aggs_hypertable_invalidation_log "
        f"WHERE hypertable_id = {found.readings} AND lowest_modified_value < %(end_us)s AND greatest_modified_value >= %(start_us)s "
        "UNION ALL SELECT lowest_modified_value, greatest_modified_value "
        "FROM _timescaledb_catalog.continuous_aggs_materialization_invalidation_log "
        f"WHERE materialization_id = {mat_id} AND lowest_modified_value < %(end_us)s AND greatest_modified_value >= %(start_us)s) "
        # Only below the watermark: above it the view reads the raw rows itself.
        "SELECT floor(GREATEST(lo, %(start_us)s) / 1000000.0)::bigint AS lo, "
        "floor(LEAST(hi, (SELECT w FROM mark) - 1, %(end_us)s - 1) / 1000000.0)::bigint AS hi "
        "FROM entries WHERE lo < (SELECT w FROM mark))"
    )
    return sql


def stale_spans(*, start: int, end: int) -> list[tuple[int, int]]:
    """The spans of [start, end) where the materialized rows of the hourly or the daily aggregate
    (`rollup_relations`) are not known to equal the raw rows: what the invalidation logs mark
    below each watermark (whole hours or days; the logs are not kept per meter, so for every
    meter), and everything from the watermark on, which is not materialized. Merged."""
    found = _required_catalog()
    hour, day = _stale_sql(HOUR, found), _stale_sql(DAY, found)
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT {HOUR}, lo, hi FROM {hour} AS h WHERE lo <= hi UNION ALL SELECT {DAY}, lo, hi FROM {day} AS d WHERE lo <= hi "
            f"UNION ALL SELECT 0, floor(_timescaledb_functions.cagg_watermark({found.aggregates[HOUR]}) / 1000000.0)::bigint, NULL "
            f"UNION ALL SELECT 0, floor(_timescaledb_functions.cagg_watermark({found.aggregates[DAY]}) / 1000000.0)::bigint, NULL",
            {"start_us": start * MICROSECONDS, "end_us": end * MICROSECONDS},
        )
        rows = cursor.fetchall()
    spans = [span for width in (HOUR, DAY) for span in _whole_buckets(
        [(lo, hi) for w, lo, hi in rows if w == width], width=width, start=start, end=end,
    )]
    spans += [(max(start, int(watermark)), end) for w, watermark, _ in rows if w == 0]
    return _merged(spans)


def _required_catalog() -> Catalog:
    found = catalog()
    if found is None:
        raise LookupError("this database has no TimescaleDB aggregates of readings")
    return found


def rollups(*, meter_id: int, width: int, start: int, end: int) -> Rollups:
    """The buckets of `width` (HOUR or DAY) of one meter that start in [start, end), from its
    continuous aggregate, and the spans within [start, end) to read from the raw rows instead;
    read in one statement."""
    found = _required_catalog()
    view = AGGREGATES[width]
    sql = (
        f"WITH stale AS {_stale_sql(width, found)}, "
        "rows AS (SELECT start AS s, count AS c, total, low, high "
        f"FROM {view} WHERE meter_id = %(meter)s AND bucket >= to_timestamp(%(start)s) AND bucket < to_timestamp(%(end)s) ORDER BY bucket) "
        "SELECT (SELECT string_agg(int8send(s), '') FROM rows), (SELECT string_agg(int8send(c), '') FROM rows), "
        "(SELECT string_agg(float8send(total), '') FROM rows), (SELECT string_agg(float8send(low), '') FROM rows), "
        "(SELECT string_agg(float8send(high), '') FROM rows), "
        "(SELECT array_agg(ARRAY[lo, hi] ORDER BY lo) FROM stale WHERE lo <= hi)"
    )
    params = {"meter": meter_id, "start": start, "end": end, "start_us": start * MICROSECONDS, "end_us": end * MICROSECONDS}
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
    return _merged(
        (max(start, lo - lo % width), min(end, hi - hi % width + width)) for lo, hi in ((int(lo), int(hi)) for lo, hi in entries)
    )


def _merged(spans) -> list[tuple[int, int]]:
    merged = []
    for a, b in sorted(spans):
        if a >= b:
            continue
        if merged and a <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], b))
        else:
            merged.append((a, b))
    return merged


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


def refresh_all_after_commit() -> None:
    """Once the current transaction commits, refresh both aggregates over all time (what they
    already hold is redone only where invalidated)."""
    def refresh_all():
        for view in AGGREGATES.values():
            try:
                with connection.cursor() as cursor:
                    cursor.execute("CALL refresh_continuous_aggregate(%s, NULL, NULL)", [view])
            except DatabaseError:
                logger.warning("refreshing %s failed; its refresh policy will", view, exc_info=True)

    transaction.on_commit(refresh_all)


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
