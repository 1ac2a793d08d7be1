"""Writing readings into the relational store: one upsert by (meter, time) through a staging table,
for file imports (a million rows of one meter, streamed) and live writes (a few rows of many
meters) alike.

Rows go to a temporary staging table first (one per connection, emptied for each write: COPY on
PostgreSQL, one executemany on SQLite), analysed where a join with the store needs it, then merged
by (meter, time) in a few set-based statements; many rows whose spans hold no reading yet (a new
meter's file, a backlog of live readings) are inserted without being compared with the store row
by row. The merge is the one place that appends what a write changed (new readings, new values
for a time) to the change log that WatchReadings serves and keeps each meter's summary (count,
first and last reading, data version) in step: in the write's transaction, with the meters locked,
so that within a meter the log's ids follow commit order. It records who made the write too (a
`Write` row, one a meter for writes of devices), which the change-log rows point at. On PostgreSQL
it then notifies the watching servers.
"""
import zoneinfo
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

import numpy as np
from django.db import connection
from django.utils import timezone

from readings.csvreader import CsvError
from readings.domain import WriteBy
from readings.models import Meter, Reading, ReadingChange, Write
from readings.sources.sql import timescale
from readings.sources.sql.citus import (
    begin_write, is_citus, lock_meters_on_coordinator, meters_updated_together, spans_condition, store_in_spans,
)
from readings.sources.sql.dialect import analyze, is_postgresql, load_rows, time_of
from readings.sources.sql.rollups import keep_rollups
from readings.writes.counts import WriteCounts
from readings.writes.rows import PROBLEMS_KEPT, Code, ReadingBatch, RowProblem, RowReport

STAGING_TABLE = "readings_staging"
TABLE = Reading._meta.db_table
CHANGES_TABLE = ReadingChange._meta.db_table
METERS_TABLE = Meter._meta.db_table
# The PostgreSQL channel a write notifies with the ids of the meters it changed.
CHANGES_CHANNEL = "meterusage_readings"
# Staged rows compared with the store straight away; more are first checked for readings in their span.
COMPARE_AT_ONCE_ROWS = 10_000


@dataclass(frozen=True)
class StagedRows:
    """Rows to upsert, columns of one length: each row's meter id (or one id for all, a file's),
    its place in its input (a file's line, a write's position), its time in UTC epoch seconds and
    its value."""

    meter_ids: np.ndarray | int
    lines: np.ndarray
    epochs: np.ndarray
    values: np.ndarray

    @classmethod
    def of_meter(cls, meter_id: int, batch: ReadingBatch) -> "StagedRows":
        return cls(meter_id, batch.lines, batch.epochs, batch.values)

    def __len__(self) -> int:
        return len(self.epochs)


@dataclass(frozen=True)
class MeterChange:
    """What a write did to one meter: readings inserted, and the span (epoch seconds) of its rows."""

    inserted: int = 0
    first: int = 0
    last: int = 0


@dataclass
class _Span:
    """One meter's staged rows: how many, and the first and last of their times (epoch seconds)."""

    rows: int
    first: int
    last: int

    def add(self, epochs: np.ndarray) -> None:
        self.rows += len(epochs)
        self.first = min(self.first, int(epochs.min()))
        self.last = max(self.last, int(epochs.max()))


def upsert_readings(
    *,
    meters: Sequence[Meter],
    batches: Iterable[StagedRows],
    by: WriteBy,
    report: RowReport | None = None,
    source: str = "",
    merge: bool = True,
) -> WriteCounts:
    """Upsert rows of `meters` by (meter, time), recorded as written `by` someone; returns the
    readings inserted, updated and unchanged, and the Write rows recorded. Must run inside a
    transaction. With `merge` false the rows are only checked.

    Without `report`, rows must be distinct by (meter, time). With a file's `report` (rows of one
    meter, numbered by line), staging stops at the file's first invalid row (rows are still read
    to the end, to count every invalid one), and rows repeating a time are settled here: the later
    ones are skipped (in `report`) when their values agree, CsvError names both lines of `source`
    when they differ.
    """
    with connection.cursor() as cursor:
        begin_write(cursor)
        lock_meters(cursor, [meter.pk for meter in meters])
        timescale.allow_decompression(cursor)
        _empty_staging_table(cursor)
        # Counted as rows are staged: a scan of the staging table would cost as much as a merge.
        spans: dict[int, _Span] = {}
        for batch in batches:
            if len(batch) and (report is None or not report.rows_invalid):
                columns = {"meter_id": batch.meter_ids, "line": batch.lines, "epoch": batch.epochs, "value": batch.values}
                load_rows(cursor, STAGING_TABLE, columns)
                _add_spans(spans, batch)
        if not spans or (report is not None and report.rows_invalid):
            return WriteCounts()
        analyzed = False
        if report is not None and not report.strictly_increasing:
            analyze(cursor, STAGING_TABLE)
            analyzed = True
            spans[meters[0].pk].rows -= _settle_repeated_times(cursor, meters[0], report, source)
        if not merge:
            return WriteCounts()
        return _merge_staging_table(cursor, spans, by=by, names={m.pk: m.name for m in meters}, analyzed=analyzed)


def _add_spans(spans: dict[int, _Span], batch: StagedRows) -> None:
    if isinstance(batch.meter_ids, np.ndarray):
        by_meter = [(meter_id, batch.epochs[batch.meter_ids == meter_id]) for meter_id in np.unique(batch.meter_ids).tolist()]
    else:
        by_meter = [(batch.meter_ids, batch.epochs)]
    for meter_id, epochs in by_meter:
        spans.setdefault(meter_id, _Span(0, int(epochs[0]), int(epochs[0]))).add(epochs)


def _empty_staging_table(cursor) -> None:
    # Made once per connection, emptied at the start of each write: small writes come often.
    # PostgreSQL also empties it at commit (a truncation: rows deleted one by one would pile up as
    # dead rows, which no vacuum of a temporary table clears), so the DELETE finds rows only when
    # one transaction writes twice.
    on_commit = " ON COMMIT DELETE ROWS" if is_postgresql() else ""
    cursor.execute(
        f"CREATE TEMPORARY TABLE IF NOT EXISTS {STAGING_TABLE} (meter_id bigint NOT NULL, line bigint NOT NULL, "
        f"epoch bigint NOT NULL, value double precision NOT NULL){on_commit}"
    )
    cursor.execute(f"DELETE FROM {STAGING_TABLE}")


def _settle_repeated_times(cursor, meter: Meter, report: RowReport, source: str) -> int:
    """Drop the rows that repeat a time with the same value (skipped in `report`); returns how
    many. CsvError when a time is given two values."""
    cursor.execute(
        f"SELECT epoch FROM {STAGING_TABLE} GROUP BY epoch "
        "HAVING MIN(value) <> MAX(value) ORDER BY MIN(line) LIMIT 1"
    )
    conflict = cursor.fetchone()
    if conflict:
        cursor.execute(f"SELECT line, value FROM {STAGING_TABLE} WHERE epoch = %s ORDER BY line", [conflict[0]])
        rows = cursor.fetchall()
        first_line, first_value = rows[0]
        line, value = next((line, value) for line, value in rows if value != first_value)
        local = datetime.fromtimestamp(conflict[0], UTC).astimezone(zoneinfo.ZoneInfo(meter.time_zone))
        raise CsvError(
            source,
            f"lines {first_line} and {line} both give time {local:%Y-%m-%d %H:%M:%S} "
            f"with different values ({first_value!r} and {value!r})",
        )
    repeats = (
        f"SELECT s.line, d.first_line FROM {STAGING_TABLE} AS s JOIN "
        f"(SELECT epoch, MIN(line) AS first_line FROM {STAGING_TABLE} GROUP BY epoch "
        "HAVING COUNT(*) > 1) AS d ON s.epoch = d.epoch AND s.line > d.first_line"
    )
    cursor.execute(f"SELECT COUNT(*) FROM ({repeats}) AS r")
    total = cursor.fetchone()[0]
    cursor.execute(f"{repeats} ORDER BY s.line LIMIT {PROBLEMS_KEPT}")
    examples = cursor.fetchall()
    for line, first_line in examples:
        report.add_problem(RowProblem(line, "", f"duplicate of line {first_line}", "skipped", Code.DUPLICATE_ROW))
    report.rows_skipped += total - len(examples)
    cursor.execute(f"DELETE FROM {STAGING_TABLE} WHERE line IN (SELECT line FROM ({repeats}) AS r)")
    return total


def _merge_staging_table(
    cursor, spans: dict[int, _Span], *, by: WriteBy, names: Mapping[int, str], analyzed: bool = False,
) -> WriteCounts:
    # Rows whose spans hold no reading need no comparing (a fresh import: a join of every row
    # saved); few rows are compared at once, which costs no more than asking.
    if sum(span.rows for span in spans.values()) <= COMPARE_AT_ONCE_ROWS or _meters_with_readings_in(cursor, spans):
        if not analyzed:
            # Without statistics PostgreSQL plans the joins with the store as if the staging
            # table were large: a scan of every reading, which grew each live write with the
            # store. Rows that are only inserted (no join) need none.
            analyze(cursor, STAGING_TABLE)
        figures = _compare_with_store(cursor, _store(spans))
        fresh = False
    else:
        figures = {meter_id: (s.rows, s.rows, 0, s.first, s.last) for meter_id, s in spans.items()}
        fresh = True
    rows, inserted, updated = (sum(f[i] for f in figures.values()) for i in range(3))
    # Where no staged time has a reading yet, a plain INSERT does; a write racing this one into
    # the same times then fails on the unique index instead of merging (an import reports it and
    # changes nothing).
    some_stored = inserted < rows
    store = _store(spans)
    now = timezone.now()
    writes = _record_writes(figures, by=by, names=names, committed_at=now)
    if inserted or updated:
        time_sql = time_of("s.epoch")
        committed_at = connection.ops.adapt_datetimefield_value(now)
        # Each change row names its write: one for all rows, or each meter's own (a join with a
        # list of the meters' writes, as small as the batch's meters).
        if by.per_meter:
            pairs = ", ".join(["(%s, %s)"] * len(writes))
            with_writes = f"WITH w (meter_id, write_id) AS (VALUES {pairs}) "
            write_params = [x for meter_id, write in writes.items() for x in (meter_id, write.pk)]
            write_id, join_writes, changes_params = "w.write_id", " JOIN w ON w.meter_id = s.meter_id", [committed_at]
        else:
            (write,) = writes.values()
            with_writes, write_params, join_writes = "", [], ""
            write_id, changes_params = "%s", [committed_at, write.pk]
        # The change log first: once merged, a new value can no longer be told from an old one.
        if some_stored:
            cursor.execute(
                f"{with_writes}INSERT INTO {CHANGES_TABLE} (meter_id, time, value, replaced, committed_at, write_id) "
                f"SELECT s.meter_id, {time_sql}, s.value, r.meter_id IS NOT NULL, %s, {write_id} FROM {STAGING_TABLE} AS s"
                f"{join_writes} LEFT JOIN {store} AS r ON r.meter_id = s.meter_id AND r.time = {time_sql} "
                "WHERE r.meter_id IS NULL OR r.value <> s.value",
                [*write_params, *changes_params],
            )
        else:
            cursor.execute(
                f"{with_writes}INSERT INTO {CHANGES_TABLE} (meter_id, time, value, replaced, committed_at, write_id) "
                f"SELECT s.meter_id, {time_sql}, s.value, false, %s, {write_id} FROM {STAGING_TABLE} AS s{join_writes}",
                [*write_params, *changes_params],
            )
        if updated:
            # On Citus, only the written meters' shards (the staged rows are shipped to them); on
            # TimescaleDB only their batches in the chunks of their span are decompressed.
            within = f" AND {spans_condition(_span_bounds(spans), TABLE)}" if is_citus() else ""
            if timescale.catalog() is not None:
                within = f" AND {_written_bounds(spans, TABLE)}"
            cursor.execute(
                f"UPDATE {TABLE} SET value = s.value FROM {STAGING_TABLE} AS s WHERE {TABLE}.meter_id = s.meter_id "
                f"AND {TABLE}.time = {time_sql} AND {TABLE}.value <> s.value{within}"
            )
        if inserted:
            # WHERE true: SQLite needs it to tell ON CONFLICT from a join constraint.
            conflict = " ON CONFLICT (meter_id, time) DO NOTHING" if some_stored else ""
            cursor.execute(
                f"INSERT INTO {TABLE} (meter_id, time, value) SELECT s.meter_id, {time_sql}, s.value "
                f"FROM {STAGING_TABLE} AS s WHERE true{conflict}"
            )
        changed = {
            meter_id: MeterChange(inserted=f[1], first=f[3], last=f[4])
            for meter_id, f in figures.items() if f[1] or f[2]
        }
        keep_rollups(
            cursor, STAGING_TABLE, {meter_id: (figures[meter_id][0], c.first, c.last) for meter_id, c in changed.items()},
            fresh=fresh,
        )
        _note_meters_changed(cursor, changed)
        notify_changes(cursor, changed)
        if changed:
            # On TimescaleDB: the continuous aggregates over the written span, once committed.
            timescale.refresh_after_commit(
                first=min(c.first for c in changed.values()), last=max(c.last for c in changed.values())
            )
    return WriteCounts(
        inserted=inserted, updated=updated, unchanged=rows - inserted - updated,
        writes=[write.pk for write in writes.values()],
    )


def _record_writes(
    figures: Mapping[int, tuple[int, int, int, int, int]], *, by: WriteBy, names: Mapping[int, str], committed_at: datetime,
) -> dict[int, Write]:
    """The Write rows of this write, with its counts: one for all its meters (keyed by 0), or,
    for writes of devices, one a meter (keyed by the meter's id)."""
    def write(meter_ids: list[int]) -> Write:
        rows, inserted, updated = (sum(figures[m][i] for m in meter_ids) for i in range(3))
        return Write(
            written_by=by.author(names[meter_ids[0]]), channel=by.channel, committed_at=committed_at,
            meter_id=meter_ids[0] if len(meter_ids) == 1 else None, meter_count=len(meter_ids),
            inserted=inserted, updated=updated, unchanged=rows - inserted - updated,
        )

    meter_ids = sorted(figures)
    planned = {meter_id: write([meter_id]) for meter_id in meter_ids} if by.per_meter else {0: write(meter_ids)}
    Write.objects.bulk_create(planned.values())
    return planned


def _span_bounds(spans: Mapping[int, _Span]) -> dict[int, tuple[int, int]]:
    return {meter_id: (span.first, span.last) for meter_id, span in spans.items()}


def _store(spans: Mapping[int, _Span]) -> str:
    """The readings table as the merge joins it: on Citus, only the readings the write can touch
    (see readings/sources/sql/citus.py); on TimescaleDB, only the written meters' readings over
    the span of the write, as constants its planner excludes chunks and selects compressed batches
    by (joined with the staging table alone, every batch of the table was decompressed: a
    one-reading correction into 1.9M compressed readings took 1.5 s, bounded 19 ms)."""
    if is_citus():
        return store_in_spans(TABLE, _span_bounds(spans))
    if timescale.catalog() is not None:
        return f"(SELECT meter_id, time, value FROM {TABLE} WHERE {_written_bounds(spans, TABLE)})"
    return TABLE


def _written_bounds(spans: Mapping[int, _Span], table: str) -> str:
    """SQL true for the readings of `table` a write of `spans` can touch: its meters, within the
    span of all its rows (constants: integers written into the statement)."""
    ids = ",".join(str(int(meter_id)) for meter_id in sorted(spans))
    first, last = min(s.first for s in spans.values()), max(s.last for s in spans.values())
    return (
        f"{table}.meter_id = ANY('{{{ids}}}'::bigint[]) AND {table}.time >= to_timestamp({int(first)}) "
        f"AND {table}.time <= to_timestamp({int(last)})"
    )


def _meters_with_readings_in(cursor, spans: dict[int, _Span]) -> set[int]:
    """The staged meters that already have readings within the span of their staged rows."""
    if is_citus():
        # One probe a meter, each routed to its meter's shard.
        cursor.execute(" UNION ALL ".join(
            f"(SELECT meter_id FROM {TABLE} WHERE {spans_condition({meter_id: (span.first, span.last)})} LIMIT 1)"
            for meter_id, span in sorted(spans.items())
        ))
        return {int(row[0]) for row in cursor.fetchall()}
    values = ", ".join(["(%s, %s, %s)"] * len(spans))
    cursor.execute(
        f"WITH v (id, first, last) AS (VALUES {values}) SELECT v.id FROM v WHERE EXISTS (SELECT 1 FROM {TABLE} AS r "
        f"WHERE r.meter_id = v.id AND r.time >= {time_of('v.first')} AND r.time <= {time_of('v.last')})",
        [x for meter_id, span in spans.items() for x in (meter_id, span.first, span.last)],
    )
    return {int(row[0]) for row in cursor.fetchall()}


def _compare_with_store(cursor, store: str = TABLE) -> dict[int, tuple[int, int, int, int, int]]:
    """Per staged meter: rows, how many are new, how many give a new value, first and last epoch."""
    cursor.execute(
        "SELECT s.meter_id, COUNT(*), SUM(CASE WHEN r.meter_id IS NULL THEN 1 ELSE 0 END), "
        "SUM(CASE WHEN r.meter_id IS NOT NULL AND r.value <> s.value THEN 1 ELSE 0 END), MIN(s.epoch), MAX(s.epoch) "
        f"FROM {STAGING_TABLE} AS s LEFT JOIN {store} AS r ON r.meter_id = s.meter_id AND r.time = {time_of('s.epoch')} "
        "GROUP BY s.meter_id"
    )
    return {int(row[0]): tuple(int(x) for x in row[1:]) for row in cursor.fetchall()}


def note_meters_changed(*, changes: Mapping[int, MeterChange]) -> None:
    """Keep the summaries of meters whose readings changed in step (see `_note_meters_changed`);
    for a write the merge does not see, such as points written to a series store."""
    with connection.cursor() as cursor:
        _note_meters_changed(cursor, changes)


def _note_meters_changed(cursor, changes: Mapping[int, MeterChange]) -> None:
    """Each changed meter's count, first/last reading and data version, in one statement: the one
    place a write keeps a meter's summary (what the sql source answers from) in step. Expressions,
    so that two writes into one meter cannot lose each other's counts."""
    if not changes:
        return
    rows = ", ".join(["(%s, %s, %s, %s)"] * len(changes))
    params = [x for meter_id, change in changes.items() for x in (meter_id, change.inserted, change.first, change.last)]
    first, last = time_of("v.first"), time_of("v.last")
    with meters_updated_together(cursor, list(changes)):
        cursor.execute(
            f"WITH v (id, inserted, first, last) AS (VALUES {rows}) "
            f"UPDATE {METERS_TABLE} SET reading_count = {METERS_TABLE}.reading_count + v.inserted, "
            f"first_reading_at = CASE WHEN v.inserted > 0 AND ({METERS_TABLE}.first_reading_at IS NULL "
            f"OR {METERS_TABLE}.first_reading_at > {first}) THEN {first} ELSE {METERS_TABLE}.first_reading_at END, "
            f"last_reading_at = CASE WHEN v.inserted > 0 AND ({METERS_TABLE}.last_reading_at IS NULL "
            f"OR {METERS_TABLE}.last_reading_at < {last}) THEN {last} ELSE {METERS_TABLE}.last_reading_at END, "
            f"data_version = {METERS_TABLE}.data_version + 1, updated_at = %s "
            f"FROM v WHERE {METERS_TABLE}.id = v.id",
            [*params, connection.ops.adapt_datetimefield_value(timezone.now())],
        )


def lock_meters(cursor, meter_ids: Iterable[int]) -> None:
    """Hold the meters' rows until the transaction ends, so that writes into one meter commit one
    after another, in the order of their change-log ids. (SQLite has one writer at a time.)"""
    if is_citus():
        lock_meters_on_coordinator(cursor, sorted(meter_ids))
    elif is_postgresql():
        cursor.execute(f"SELECT id FROM {METERS_TABLE} WHERE id = ANY(%s) ORDER BY id FOR UPDATE", [sorted(meter_ids)])


def notify_changes(cursor, meter_ids: Iterable[int]) -> None:
    """Tell the watching servers (on commit: NOTIFY waits for it) which meters changed."""
    if is_postgresql():
        cursor.execute("SELECT pg_notify(%s, %s)", [CHANGES_CHANNEL, ",".join(map(str, sorted(set(meter_ids))))])
