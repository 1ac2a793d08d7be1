"""Writes: importing CSV files of readings into the relational store, seeding InfluxDB."""
import hashlib
import zoneinfo
from collections.abc import Callable, Iterable
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

from django.db import IntegrityError, connection, transaction
from django.db.models import F, Value
from django.db.models.functions import Coalesce, Greatest, Least
from django.utils import timezone
from django.utils.text import slugify

from readings.csvfile import (
    DEFAULT_BATCH_SIZE,
    PROBLEMS_KEPT,
    CsvError,
    CsvReport,
    ReadingBatch,
    RowProblem,
    check_is_file,
    read_readings,
)
from readings.influx import DEFAULT_WRITE_BATCH, InfluxClient, InfluxError, InfluxSettings, line_protocol
from readings.models import ImportRun, Meter, Reading
from readings.validators import zone_named

STAGING_TABLE = "readings_import_staging"
FROM_DB_BATCH = 50_000


class ReadingsImportError(Exception):
    """An import that failed and changed nothing; `run` is its recorded ImportRun, if any."""

    def __init__(self, message: str, *, run: ImportRun | None = None):
        super().__init__(message)
        self.run = run


def meter_name_for(path: Path) -> str:
    """The meter a file is imported into when none is named: its stem, as a slug."""
    return slugify(path.stem) or "meter"


def validate_time_zone_name(name: str) -> str:
    try:
        zone_named(name)
    except ValueError:
        raise ReadingsImportError(f"unknown time zone {name[:64]!r}; use an IANA name such as Europe/Amsterdam") from None
    return name


def file_sha256(path: Path) -> str:
    with path.open("rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def _start_run(
    *, path: Path | str, meter_name: str | None, time_zone: str | None, target: str, dry_run: bool
) -> tuple[ImportRun, Meter | None]:
    """Check the file and the names, then record a running ImportRun for it."""
    path = Path(path)
    try:
        check_is_file(path)
    except CsvError as exc:
        raise ReadingsImportError(str(exc)) from None
    meter_name = meter_name or meter_name_for(path)
    if slugify(meter_name) != meter_name:
        raise ReadingsImportError(
            f"meter name {meter_name!r} is not a slug (letters, digits, '-' and '_')"
        )
    existing = Meter.objects.filter(name=meter_name).first()
    zone = validate_time_zone_name(time_zone or (existing.time_zone if existing else "UTC"))
    run = ImportRun.objects.create(
        meter_name=meter_name,
        meter=existing,
        target=target,
        file_name=str(path),
        file_size=path.stat().st_size,
        file_sha256=file_sha256(path),
        time_zone=zone,
        dry_run=dry_run,
    )
    return run, existing


@contextmanager
def _recorded(run: ImportRun, report: CsvReport, outcome: dict):
    """Finish `run` as failed (raising ReadingsImportError) or as succeeded with `outcome`."""
    try:
        yield
    except (CsvError, InfluxError) as exc:
        _finish(run, report, status=ImportRun.Status.FAILED, error=str(exc), **outcome)
        raise ReadingsImportError(str(exc), run=run) from None
    except IntegrityError as exc:
        message = (
            f"{run.file_name}: another import wrote readings of meter {run.meter_name!r} in the same "
            f"range at the same time; nothing was imported, run it again ({exc})"
        )
        _finish(run, report, status=ImportRun.Status.FAILED, error=message, **outcome)
        raise ReadingsImportError(message, run=run) from None
    except BaseException as exc:
        _finish(run, report, status=ImportRun.Status.FAILED, error=f"{type(exc).__name__}: {exc}", **outcome)
        raise
    _finish(run, report, status=ImportRun.Status.SUCCEEDED, **outcome)


def readings_import(
    *,
    path: Path | str,
    meter_name: str | None = None,
    time_zone: str | None = None,
    dry_run: bool = False,
    batch_size: int = DEFAULT_BATCH_SIZE,
    on_progress: Callable[[int, int], None] | None = None,
) -> ImportRun:
    """Import a CSV of readings into the relational store, atomically and idempotently.

    Readings are upserted by (meter, time); the meter is created if missing. Returns the
    finished ImportRun; raises ReadingsImportError (with the failed run) and writes no reading
    when the file has an invalid row or cannot be read.
    """
    run, existing = _start_run(
        path=path, meter_name=meter_name, time_zone=time_zone, target=ImportRun.Target.SQL, dry_run=dry_run
    )
    report, outcome = CsvReport(), {}
    with _recorded(run, report, outcome):
        with transaction.atomic():
            meter = existing or Meter.objects.create(name=run.meter_name, time_zone=run.time_zone)
            batches = read_readings(
                run.file_name, time_zone=run.time_zone, report=report, batch_size=batch_size, on_progress=on_progress
            )
            outcome["inserted"], outcome["updated"] = readings_upsert(
                meter=meter, batches=batches, report=report, source=run.file_name
            )
            if report.rows_invalid:
                raise CsvError(run.file_name, _invalid_rows_message(report))
            if dry_run:
                transaction.set_rollback(True)
        if not dry_run or existing:
            run.meter = meter
    return run


def readings_seed_influx(
    *,
    path: Path | str,
    meter_name: str | None = None,
    time_zone: str | None = None,
    dry_run: bool = False,
    mirror: bool = True,
    create_database: bool = False,
    batch_size: int = DEFAULT_WRITE_BATCH,
    on_progress: Callable[[int, int], None] | None = None,
) -> ImportRun:
    """Write a CSV of readings to InfluxDB, cleaned as `readings_import` cleans it.

    The whole file is checked before the first point is written. With `mirror`, the readings
    are also upserted into the relational store, in a transaction that commits only once every
    point is in InfluxDB. Writing the same file again leaves the same points. A failure leaves
    the run marked failed with the points written so far; running again completes it.
    """
    run, existing = _start_run(
        path=path, meter_name=meter_name, time_zone=time_zone, target=ImportRun.Target.INFLUXDB, dry_run=dry_run
    )
    client = InfluxClient(InfluxSettings.from_settings())
    report, outcome = CsvReport(), {"points": 0, "merged": mirror}
    with _recorded(run, report, outcome):
        _check_target(client, create=create_database and not dry_run)
        with transaction.atomic():
            meter = existing or Meter.objects.create(
                name=run.meter_name, time_zone=run.time_zone, source=influx_source_alias()
            )
            batches = read_readings(run.file_name, time_zone=run.time_zone, report=report)
            if mirror:
                outcome["inserted"], outcome["updated"] = readings_upsert(
                    meter=meter, batches=batches, report=report, source=run.file_name
                )
            else:
                _check_without_storing(meter, batches, report, run.file_name)
            if report.rows_invalid:
                raise CsvError(run.file_name, _invalid_rows_message(report))
            if dry_run:
                transaction.set_rollback(True)
            else:
                for batch in read_readings(
                    run.file_name, time_zone=run.time_zone, report=CsvReport(), on_progress=on_progress
                ):
                    _write_points(client, meter.name, batch.epochs, batch.values, batch_size, outcome)
        if not dry_run or existing:
            run.meter = meter
    return run


def readings_seed_influx_from_db(
    *, meter: Meter, dry_run: bool = False, create_database: bool = False, batch_size: int = DEFAULT_WRITE_BATCH
) -> ImportRun:
    """Write every reading the relational store holds for `meter` to InfluxDB."""
    from readings.selectors import MAX_EPOCH, MIN_EPOCH
    from readings.sources.sql import SqlSource

    run = ImportRun.objects.create(
        meter_name=meter.name, meter=meter, target=ImportRun.Target.INFLUXDB,
        file_name="relational store", time_zone=meter.time_zone, dry_run=dry_run,
    )
    client = InfluxClient(InfluxSettings.from_settings())
    report, outcome = CsvReport(), {"points": 0, "merged": False}
    source, position = SqlSource(alias="default"), None
    with _recorded(run, report, outcome):
        _check_target(client, create=create_database and not dry_run)
        while True:
            batch = source.read(meter, start=MIN_EPOCH, end=MAX_EPOCH, after=position, limit=FROM_DB_BATCH)
            if not len(batch):
                break
            report.rows_read += len(batch)
            position = int(batch.times[-1])
            if not dry_run:
                _write_points(client, meter.name, batch.times, batch.values, batch_size, outcome)
    return run


def _write_points(client: InfluxClient, meter: str, epochs, values, batch_size: int, outcome: dict) -> None:
    """Write in requests of `batch_size` points, counting them as they land (for a failed run)."""
    for low in range(0, len(epochs), batch_size):
        client.write(line_protocol(meter, epochs[low : low + batch_size], values[low : low + batch_size]))
        outcome["points"] += len(epochs[low : low + batch_size])


def _check_target(client: InfluxClient, *, create: bool) -> None:
    """Fail before any work when InfluxDB is unreachable, refuses us or lacks the database."""
    if create:
        client.create_database()
    client.write(b"")  # an empty write checks all three and writes nothing


def influx_source_alias() -> str:
    """The READINGS_SOURCES alias that serves InfluxDB, for meters that seeding creates."""
    from django.conf import settings

    for alias, config in settings.READINGS_SOURCES.items():
        if config.get("BACKEND") == "readings.sources.influx.InfluxSource":
            return alias
    return "default"


def _check_without_storing(meter: Meter, batches: Iterable[ReadingBatch], report: CsvReport, source: str) -> None:
    """Read everything (counting invalid rows); stage it only when duplicates are possible."""
    for _ in batches:
        pass
    if not report.rows_invalid and not report.strictly_increasing:
        # Times out of order: conflicting duplicates are found the way an import finds them.
        scratch = CsvReport(strictly_increasing=False)
        readings_upsert(
            meter=meter, batches=read_readings(source, time_zone=meter.time_zone, report=scratch),
            report=scratch, source=source, merge=False,
        )


def _invalid_rows_message(report: CsvReport) -> str:
    shown = report.invalid_problems()[:5]
    details = "; ".join(f"line {p.line}: {p.reason}" for p in shown)
    more = f"; and {report.rows_invalid - len(shown)} more" if report.rows_invalid > len(shown) else ""
    noun = "row" if report.rows_invalid == 1 else "rows"
    return f"{report.rows_invalid} invalid {noun}, nothing imported: {details}{more}"


def _finish(
    run: ImportRun,
    report: CsvReport,
    *,
    status: str,
    error: str = "",
    inserted: int = 0,
    updated: int = 0,
    points: int = 0,
    merged: bool = True,
) -> None:
    run.status = status
    run.error = error
    run.finished_at = timezone.now()
    run.rows_read = report.rows_read
    run.rows_skipped = report.rows_skipped
    run.rows_invalid = report.rows_invalid
    run.rows_inserted = inserted
    run.rows_updated = updated
    run.points_written = points
    if status == ImportRun.Status.SUCCEEDED and merged:
        run.rows_unchanged = report.rows_read - report.rows_skipped - inserted - updated
    run.rejected_rows = [p.as_dict() for p in report.problems]
    run.save()


def readings_upsert(
    *, meter: Meter, batches: Iterable[ReadingBatch], report: CsvReport, source: str, merge: bool = True
) -> tuple[int, int]:
    """Upsert batches of readings of one meter read from `source`; returns (inserted, updated).
    With `merge` false the rows are only checked (duplicates included), not stored.

    Rows go to a temporary staging table first (COPY on PostgreSQL, executemany on SQLite), then
    are merged by (meter, time) in two set-based statements. Must run inside a transaction.
    Duplicate times within the input are merged when their values agree (the later rows are
    reported as skipped in `report`) and raise CsvError naming both lines when they differ.
    """
    with connection.cursor() as cursor:
        _create_staging_table(cursor)
        writer = _copy_batch if connection.vendor == "postgresql" else _insert_batch
        for batch in batches:
            # Rows are still read to the end to count every invalid one, but no longer staged.
            if not report.rows_invalid:
                writer(cursor, batch)
        if report.rows_invalid or report.min_epoch is None:
            _drop_staging_table(cursor)
            return 0, 0
        if connection.vendor == "postgresql":
            cursor.execute(f"ANALYZE {STAGING_TABLE}")
        if not report.strictly_increasing:
            _merge_duplicate_rows(cursor, meter, report, source)
        inserted, updated = _merge_staging_table(cursor, meter, report) if merge else (0, 0)
        _drop_staging_table(cursor)
    _note_new_readings(meter, inserted, report)
    return inserted, updated


def _create_staging_table(cursor) -> None:
    _drop_staging_table(cursor)
    cursor.execute(
        f"CREATE TEMPORARY TABLE {STAGING_TABLE} "
        "(line bigint NOT NULL, epoch bigint NOT NULL, value double precision NOT NULL)"
    )


def _drop_staging_table(cursor) -> None:
    cursor.execute(f"DROP TABLE IF EXISTS {STAGING_TABLE}")


def _copy_batch(cursor, batch: ReadingBatch) -> None:
    import pyarrow as pa
    import pyarrow.csv as pa_csv

    table = pa.table({"line": batch.lines, "epoch": batch.epochs, "value": batch.values})
    sink = pa.BufferOutputStream()
    # Arrow writes the shortest text that reads back to the same double, so values stay exact.
    pa_csv.write_csv(table, sink, write_options=pa_csv.WriteOptions(include_header=False))
    with cursor.copy(f"COPY {STAGING_TABLE} (line, epoch, value) FROM STDIN (FORMAT csv)") as copy:
        copy.write(sink.getvalue().to_pybytes())


def _insert_batch(cursor, batch: ReadingBatch) -> None:
    cursor.executemany(
        f"INSERT INTO {STAGING_TABLE} (line, epoch, value) VALUES (%s, %s, %s)",
        zip(batch.lines.tolist(), batch.epochs.tolist(), batch.values.tolist()),
    )


def _time_sql(column: str) -> str:
    """SQL turning epoch seconds into the value Django stores in a DateTimeField."""
    if connection.vendor == "postgresql":
        return f"to_timestamp({column})"
    # Django keeps SQLite datetimes as 'YYYY-MM-DD HH:MM:SS' text in UTC; datetime() writes just that.
    return f"datetime({column}, 'unixepoch')"


def _merge_duplicate_rows(cursor, meter: Meter, report: CsvReport, source: str) -> None:
    cursor.execute(
        f"SELECT epoch FROM {STAGING_TABLE} GROUP BY epoch "
        "HAVING MIN(value) <> MAX(value) ORDER BY MIN(line) LIMIT 1"
    )
    conflict = cursor.fetchone()
    if conflict:
        cursor.execute(
            f"SELECT line, value FROM {STAGING_TABLE} WHERE epoch = %s ORDER BY line", [conflict[0]]
        )
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
    table = Reading._meta.db_table
    time_sql = _time_sql("s.epoch")
    updated = 0
    # A first import into an empty range needs no update pass.
    overlaps = _range_has_readings(meter, report.min_epoch, report.max_epoch)
    if overlaps:
        cursor.execute(
            f"UPDATE {table} SET value = s.value FROM {STAGING_TABLE} AS s "
            f"WHERE {table}.meter_id = %s AND {table}.time = {time_sql} AND {table}.value <> s.value",
            [meter.pk],
        )
        updated = cursor.rowcount
    # Into an empty range a plain INSERT does; an import racing this one into the same range
    # then fails on the unique index instead of merging (see readings_import).
    # WHERE true: SQLite needs it to tell ON CONFLICT from a join constraint.
    conflict = " ON CONFLICT (meter_id, time) DO NOTHING" if overlaps else ""
    cursor.execute(
        f"INSERT INTO {table} (meter_id, time, value) SELECT %s, {time_sql}, s.value "
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
    """Keep the meter's cached count and first/last times in step with what was added."""
    if not inserted:
        return
    first = Value(datetime.fromtimestamp(report.min_epoch, UTC))
    last = Value(datetime.fromtimestamp(report.max_epoch, UTC))
    # Expressions, so that two imports into one meter cannot lose each other's counts.
    Meter.objects.filter(pk=meter.pk).update(
        reading_count=F("reading_count") + inserted,
        first_reading_at=Least(Coalesce("first_reading_at", first), first),
        last_reading_at=Greatest(Coalesce("last_reading_at", last), last),
        updated_at=timezone.now(),
    )
    meter.refresh_from_db(fields=["reading_count", "first_reading_at", "last_reading_at", "updated_at"])
