"""Writing readings into the relational store: upserts by (meter, time) through a staging table."""
import zoneinfo
from collections.abc import Iterable
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
from readings.models import Meter, Reading
from readings.runs import note_readings_changed
from readings.sources.sql.dialect import analyze, load_rows, time_of

STAGING_TABLE = "readings_import_staging"
TABLE = Reading._meta.db_table


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
