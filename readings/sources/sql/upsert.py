"""Writing readings into the relational store: upserts by (meter, time) through a staging table.

Every write also appends what it changed (new readings, new values for a time) to the change log
that WatchReadings serves, in the same transaction and with the meter locked, so that within a
meter the log's ids follow commit order; on PostgreSQL it then notifies the watching servers.
"""
import zoneinfo
from collections.abc import Iterable

import numpy as np
from datetime import UTC, datetime

from django.db import connection
from django.db.models import F, Value
from django.db.models.functions import Coalesce, Greatest, Least
from django.utils import timezone

from readings.csvfile import (
    PROBLEMS_KEPT,
    CsvError,
    CsvReport,
    ReadingBatch,
    RowProblem,
)
from readings.models import Meter, Reading, ReadingChange
from readings.runs import note_readings_changed
from readings.sources.sql.dialect import analyze, is_postgresql, load_rows, time_of

STAGING_TABLE = "readings_import_staging"
LIVE_STAGING_TABLE = "readings_live_staging"
TABLE = Reading._meta.db_table
CHANGES_TABLE = ReadingChange._meta.db_table
METERS_TABLE = Meter._meta.db_table
# The PostgreSQL channel a write notifies with the ids of the meters it changed.
CHANGES_CHANNEL = "meterusage_readings"


def upsert_readings(
    *, meter: Meter, batches: Iterable[ReadingBatch], report: CsvReport, source: str, merge: bool = True
) -> tuple[int, int]:
    """Upsert batches of readings of one meter read from `source`; returns (inserted, updated).
    With `merge` false the rows are only checked (duplicates included), not stored.

    Rows go to a temporary staging table first, then are merged by (meter, time) in two
    set-based statements. Must run inside a transaction. Duplicate times within the input are
    merged when their values agree (the later rows are reported as skipped in `report`) and raise
    CsvError naming both lines when they differ.
    """
    with connection.cursor() as cursor:
        lock_meters(cursor, [meter.pk])
        _create_staging_table(cursor)
        for batch in batches:
            # Rows are still read to the end to count every invalid one, but no longer staged.
            if not report.rows_invalid:
                load_rows(cursor, STAGING_TABLE, {"line": batch.lines, "epoch": batch.epochs, "value": batch.values})
        if report.rows_invalid or report.min_epoch is None:
            _drop_staging_table(cursor)
            return 0, 0
        analyze(cursor, STAGING_TABLE)
        if not report.strictly_increasing:
            _merge_duplicate_rows(cursor, meter, report, source)
        inserted, updated = _merge_staging_table(cursor, meter, report) if merge else (0, 0)
        _drop_staging_table(cursor)
        if inserted or updated:
            notify_changes(cursor, [meter.pk])
    _note_new_readings(meter, inserted, report)
    if inserted or updated:
        note_readings_changed(meter)
    return inserted, updated


def _create_staging_table(cursor) -> None:
    _drop_staging_table(cursor)
    cursor.execute(
        f"CREATE TEMPORARY TABLE {STAGING_TABLE} "
        "(line bigint NOT NULL, epoch bigint NOT NULL, value double precision NOT NULL)"
    )


def _drop_staging_table(cursor) -> None:
    cursor.execute(f"DROP TABLE IF EXISTS {STAGING_TABLE}")


def _merge_duplicate_rows(cursor, meter: Meter, report: CsvReport, source: str) -> None:
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
        report.add_problem(RowProblem(line, "", f"duplicate of line {first_line}", "skipped"))
    report.rows_skipped += total - len(examples)
    cursor.execute(f"DELETE FROM {STAGING_TABLE} WHERE line IN (SELECT line FROM ({repeats}) AS r)")


def _merge_staging_table(cursor, meter: Meter, report: CsvReport) -> tuple[int, int]:
    time_sql = time_of("s.epoch")
    updated = 0
    # A first import into an empty range needs no update pass.
    overlaps = _range_has_readings(meter, report.min_epoch, report.max_epoch)
    committed_at = connection.ops.adapt_datetimefield_value(timezone.now())
    # The change log first: once merged, a new value can no longer be told from an old one.
    if overlaps:
        cursor.execute(
            f"INSERT INTO {CHANGES_TABLE} (meter_id, time, value, replaced, committed_at) "
            f"SELECT %s, {time_sql}, s.value, r.id IS NOT NULL, %s FROM {STAGING_TABLE} AS s "
            f"LEFT JOIN {TABLE} AS r ON r.meter_id = %s AND r.time = {time_sql} "
            "WHERE r.id IS NULL OR r.value <> s.value",
            [meter.pk, committed_at, meter.pk],
        )
    else:
        cursor.execute(
            f"INSERT INTO {CHANGES_TABLE} (meter_id, time, value, replaced, committed_at) "
            f"SELECT %s, {time_sql}, s.value, false, %s FROM {STAGING_TABLE} AS s",
            [meter.pk, committed_at],
        )
    if overlaps:
        cursor.execute(
            f"UPDATE {TABLE} SET value = s.value FROM {STAGING_TABLE} AS s "
            f"WHERE {TABLE}.meter_id = %s AND {TABLE}.time = {time_sql} AND {TABLE}.value <> s.value",
            [meter.pk],
        )
        updated = cursor.rowcount
    # Into an empty range a plain INSERT does; a write racing this one into the same range then
    # fails on the unique index instead of merging (the import reports it and changes nothing).
    # WHERE true: SQLite needs it to tell ON CONFLICT from a join constraint.
    conflict = " ON CONFLICT (meter_id, time) DO NOTHING" if overlaps else ""
    cursor.execute(
        f"INSERT INTO {TABLE} (meter_id, time, value) SELECT %s, {time_sql}, s.value "
        f"FROM {STAGING_TABLE} AS s WHERE true{conflict}",
        [meter.pk],
    )
    return cursor.rowcount, updated


def _range_has_readings(meter: Meter, first: int, last: int) -> bool:
    return Reading.objects.filter(
        meter=meter,
        time__gte=datetime.fromtimestamp(first, UTC),
        time__lte=datetime.fromtimestamp(last, UTC),
    ).exists()


def _note_new_readings(meter: Meter, inserted: int, report: CsvReport) -> None:
    """Keep the meter's count and first/last times (the sql source's summary) in step."""
    if not inserted:
        return
    first = Value(datetime.fromtimestamp(report.min_epoch, UTC))
    last = Value(datetime.fromtimestamp(report.max_epoch, UTC))
    # Expressions, so that two writes into one meter cannot lose each other's counts.
    Meter.objects.filter(pk=meter.pk).update(
        reading_count=F("reading_count") + inserted,
        first_reading_at=Least(Coalesce("first_reading_at", first), first),
        last_reading_at=Greatest(Coalesce("last_reading_at", last), last),
        updated_at=timezone.now(),
    )
    meter.refresh_from_db(fields=["reading_count", "first_reading_at", "last_reading_at", "updated_at"])


def lock_meters(cursor, meter_ids: Iterable[int]) -> None:
    """Hold the meters' rows until the transaction ends, so that writes into one meter commit one
    after another, in the order of their change-log ids. (SQLite has one writer at a time.)"""
    if is_postgresql():
        cursor.execute(f"SELECT id FROM {METERS_TABLE} WHERE id = ANY(%s) ORDER BY id FOR UPDATE", [sorted(meter_ids)])


def notify_changes(cursor, meter_ids: Iterable[int]) -> None:
    """Tell the watching servers (on commit: NOTIFY waits for it) which meters changed."""
    if is_postgresql():
        cursor.execute("SELECT pg_notify(%s, %s)", [CHANGES_CHANNEL, ",".join(map(str, sorted(set(meter_ids))))])


def upsert_live_readings(
    writes: list[tuple[Meter, np.ndarray, np.ndarray]],
) -> dict[int, tuple[int, int]]:
    """Upsert the readings of several meters at once, each given as (meter, epochs, values) with
    distinct times per entry; a later entry's value for a (meter, time) wins over an earlier one
    (a correction). Returns {meter id: (inserted, updated)}. Must run inside a transaction.

    Sized for many small writes (API calls, MQTT messages gathered into one transaction): one
    staging table and a handful of statements for all of them.
    """
    writes = [w for w in writes if len(w[1])]
    if not writes:
        return {}
    meter_ids = np.concatenate([np.full(len(epochs), meter.pk, dtype=np.int64) for meter, epochs, _ in writes])
    epochs = np.concatenate([w[1] for w in writes]).astype(np.int64)
    values = np.concatenate([w[2] for w in writes]).astype(np.float64)
    # The last entry for each (meter, time) wins: a stable sort keeps the entries' order.
    order = np.lexsort((np.arange(len(epochs)), epochs, meter_ids))
    meter_ids, epochs, values = meter_ids[order], epochs[order], values[order]
    last = np.ones(len(epochs), dtype=bool)
    last[:-1] = (meter_ids[1:] != meter_ids[:-1]) | (epochs[1:] != epochs[:-1])
    meter_ids, epochs, values = meter_ids[last], epochs[last], values[last]

    time_sql = time_of("s.epoch")
    joined = (
        f"FROM {LIVE_STAGING_TABLE} AS s LEFT JOIN {TABLE} AS r "
        f"ON r.meter_id = s.meter_id AND r.time = {time_sql}"
    )
    committed_at = connection.ops.adapt_datetimefield_value(timezone.now())
    with connection.cursor() as cursor:
        lock_meters(cursor, set(meter_ids.tolist()))
        # Made once per connection, empty at the start of each write: small writes come often.
        # PostgreSQL empties it at commit (a truncation: rows deleted one by one would pile up
        # as dead rows, which no vacuum of a temporary table clears).
        on_commit = " ON COMMIT DELETE ROWS" if is_postgresql() else ""
        cursor.execute(
            f"CREATE TEMPORARY TABLE IF NOT EXISTS {LIVE_STAGING_TABLE} "
            f"(meter_id bigint NOT NULL, epoch bigint NOT NULL, value double precision NOT NULL){on_commit}"
        )
        if not is_postgresql():
            cursor.execute(f"DELETE FROM {LIVE_STAGING_TABLE}")
        load_rows(cursor, LIVE_STAGING_TABLE, {"meter_id": meter_ids, "epoch": epochs, "value": values})
        # Without statistics PostgreSQL plans the joins below as if the table were large: a scan
        # of every reading, which grew each write with the store.
        analyze(cursor, LIVE_STAGING_TABLE)
        cursor.execute(
            "SELECT s.meter_id, SUM(CASE WHEN r.id IS NULL THEN 1 ELSE 0 END), "
            "SUM(CASE WHEN r.id IS NOT NULL AND r.value <> s.value THEN 1 ELSE 0 END), "
            f"MIN(s.epoch), MAX(s.epoch) {joined} GROUP BY s.meter_id"
        )
        found = {row[0]: tuple(int(x) for x in row[1:]) for row in cursor.fetchall()}
        cursor.execute(
            f"INSERT INTO {CHANGES_TABLE} (meter_id, time, value, replaced, committed_at) "
            f"SELECT s.meter_id, {time_sql}, s.value, r.id IS NOT NULL, %s {joined} "
            "WHERE r.id IS NULL OR r.value <> s.value",
            [committed_at],
        )
        cursor.execute(
            f"UPDATE {TABLE} SET value = s.value FROM {LIVE_STAGING_TABLE} AS s "
            f"WHERE {TABLE}.meter_id = s.meter_id AND {TABLE}.time = {time_sql} AND {TABLE}.value <> s.value"
        )
        cursor.execute(
            f"INSERT INTO {TABLE} (meter_id, time, value) SELECT s.meter_id, {time_sql}, s.value "
            f"FROM {LIVE_STAGING_TABLE} AS s WHERE true ON CONFLICT (meter_id, time) DO NOTHING"
        )
        changed = {meter_id: figures for meter_id, figures in found.items() if figures[0] or figures[1]}
        if changed:
            _note_live_changes(cursor, changed)
            notify_changes(cursor, changed)
    return {meter_id: (inserted, updated) for meter_id, (inserted, updated, *_) in found.items()}


def _note_live_changes(cursor, changed: dict[int, tuple[int, int, int, int]]) -> None:
    """Each changed meter's count, first/last reading and data version, in one statement."""
    rows = ", ".join(["(%s, %s, %s, %s)"] * len(changed))
    params = [x for meter_id, (inserted, _, first, last) in changed.items() for x in (meter_id, inserted, first, last)]
    first, last = time_of("v.first"), time_of("v.last")
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
