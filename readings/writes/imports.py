"""File writes: CSV files of readings into the relational store (import) and into a series store
such as InfluxDB (seed), each one atomic where the store allows and recorded as an ImportRun: its
counts and the rows it set aside, finished as succeeded or failed whatever happens in between."""
import getpass
import hashlib
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

from django.core.exceptions import ImproperlyConfigured
from django.db import IntegrityError, InternalError, transaction
from django.utils import timezone
from django.utils.text import slugify

from accounts.models import Account
from readings.csvreader import DEFAULT_BATCH_SIZE, CsvError, check_is_file, read_readings
from readings.domain import (
    MAX_EPOCH, MIN_EPOCH, WRITTEN_BY_MAX_LENGTH, SourceUnavailable, WriteBy, check_meter_name, cut_short, quoted,
    time_zone_named,
)
from readings.models import ImportRun, Meter, Reading, Write
from readings.sources import Series, SeriesStore, readings_sources
from readings.sources.sql import SqlSource
from readings.sources.sql import timescale
from readings.sources.sql.citus import is_citus, is_unique_violation
from readings.sources.sql.dialect import analyze_if_grown
from readings.sources.sql.upsert import MeterChange, StagedRows, note_meters_changed, upsert_readings
from readings.writes.counts import WriteCounts
from readings.writes.rows import Ambiguous, ReadingBatch, RowReport

FROM_DB_BATCH = 50_000

__all__ = [
    "ReadingsImportError", "command_author", "meter_name_for", "readings_import", "readings_seed", "readings_seed_from_db",
    "series_store_alias",
]


class ReadingsImportError(Exception):
    """A write that failed and changed nothing it could roll back; `run` is its recorded ImportRun."""

    def __init__(self, message: str, *, run: ImportRun | None = None):
        super().__init__(message)
        self.run = run


def meter_name_for(path: Path) -> str:
    """The meter a file is imported into when none is named: its stem, as a slug."""
    return slugify(path.stem) or "meter"


def command_author() -> str:
    """Who runs a command, as the record of its writes says: "command:" and the OS user."""
    try:
        return f"command:{getpass.getuser()}"
    except (KeyError, OSError):  # no user name in the environment nor the password database
        return "command"


def _author(written_by: str | None, uploaded_by) -> str:
    """Who a file write is by: `written_by`, else the uploader ("user:ann"), else the service."""
    if written_by:
        return written_by
    return f"user:{uploaded_by.get_username()}" if uploaded_by is not None else "service"


def file_sha256(path: Path) -> str:
    with path.open("rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def start_run(
    *, meter_name: str, meter: Meter | None, target: str, time_zone: str, dry_run: bool, path: Path | None = None,
    file_name: str | None = None, uploaded_by=None, written_by: str | None = None,
) -> ImportRun:
    """Record a running ImportRun of `path` (None: the relational store is the input), named
    `file_name` if given (an upload's own name, not where it was kept), run by `written_by` (by
    default the uploader, else the service)."""
    return ImportRun.objects.create(
        meter_name=meter_name,
        meter=meter,
        target=target,
        uploaded_by=uploaded_by,
        written_by=cut_short(_author(written_by, uploaded_by), WRITTEN_BY_MAX_LENGTH),
        file_name=file_name or (str(path) if path else "relational store"),
        file_size=path.stat().st_size if path else None,
        file_sha256=file_sha256(path) if path else "",
        time_zone=time_zone,
        dry_run=dry_run,
    )


def partitioned_store() -> bool:
    """Whether the readings table is a TimescaleDB hypertable or a Citus distributed table: its rows
    are in chunks or shards, small tables that autovacuum analyzes, and the table itself holds none
    (its statistics always say it is empty, so an ANALYZE of all of it would follow every import)."""
    return is_citus() or timescale.catalog() is not None


@contextmanager
def record_run(*, run: ImportRun, report: RowReport, counts: WriteCounts):
    """Finish `run` as succeeded with `counts`, or as failed (raising ReadingsImportError for
    the errors a user can act on)."""
    try:
        yield
    except (CsvError, SourceUnavailable) as exc:
        _fail_run(run, report, counts, str(exc))
        raise ReadingsImportError(str(exc), run=run) from None
    except (IntegrityError, InternalError) as exc:
        if not is_unique_violation(exc):
            _fail_run(run, report, counts, f"{type(exc).__name__}: {exc}")
            raise
        message = (
            f"{run.file_name}: another import wrote readings of meter {run.meter_name!r} in the same "
            f"range at the same time; nothing was imported, run it again ({exc})"
        )
        _fail_run(run, report, counts, message)
        raise ReadingsImportError(message, run=run) from None
    except BaseException as exc:
        _fail_run(run, report, counts, f"{type(exc).__name__}: {exc}")
        raise
    _finish_run(run, report, counts, status=ImportRun.Status.SUCCEEDED)


def _fail_run(run: ImportRun, report: RowReport, counts: WriteCounts, error: str) -> None:
    # The relational store rolled back: nothing was inserted, updated or left unchanged there.
    rolled_back = WriteCounts(points=counts.points)
    _finish_run(run, report, rolled_back, status=ImportRun.Status.FAILED, error=error)


def _finish_run(run: ImportRun, report: RowReport, counts: WriteCounts, *, status: str, error: str = "") -> None:
    run.status = status
    run.error = error
    run.finished_at = timezone.now()
    run.rows_read = report.rows_read
    run.rows_skipped = report.rows_skipped
    run.rows_invalid = report.rows_invalid
    run.rows_inserted = counts.inserted
    run.rows_updated = counts.updated
    run.rows_unchanged = counts.unchanged
    run.points_written = counts.points
    run.rejected_rows = [p.as_dict() for p in report.problems]
    # A dry run's write was rolled back, as a failed run's was (its counts have none).
    run.write_id = counts.writes[0] if counts.writes and not run.dry_run else None
    run.save()


def owner_named(name: str | None) -> Account | None:
    """The account named `name` (None for no name); ReadingsImportError if there is none."""
    if name is None:
        return None
    found = Account.objects.filter(name=name).first()
    if found is None:
        raise ReadingsImportError(f"no account named {quoted(name)} (make it with `manage.py account add`)")
    return found


def _start_file_run(
    *, path: Path, meter_name: str | None, time_zone: str | None, target: str, dry_run: bool,
    owner: Account | None = None, file_name: str | None = None, uploaded_by=None, written_by: str | None = None,
) -> tuple[ImportRun, Meter | None]:
    """Check the file and the names, then record a running ImportRun for it."""
    try:
        check_is_file(path)
    except CsvError as exc:
        raise ReadingsImportError(str(exc)) from None
    meter_name = meter_name or meter_name_for(path)
    try:
        check_meter_name(meter_name)
    except ValueError as exc:
        raise ReadingsImportError(f"meter name {exc}") from None
    existing = Meter.objects.filter(name=meter_name).first()
    if owner is not None and existing is not None and existing.account_id != owner.pk:
        # Readings are not moved between customers by an import: the owner changes in admin.
        raise ReadingsImportError(f"meter {quoted(meter_name)} is not account {quoted(owner.name)}'s")
    zone = time_zone or (existing.time_zone if existing else "UTC")
    try:
        time_zone_named(zone)
    except ValueError as exc:
        raise ReadingsImportError(f"--tz: {exc}") from None
    run = start_run(
        meter_name=meter_name, meter=existing, target=target, time_zone=zone, dry_run=dry_run, path=path,
        file_name=file_name, uploaded_by=uploaded_by, written_by=written_by,
    )
    return run, existing


def _raise_if_invalid(report: RowReport, source: str) -> None:
    if not report.rows_invalid:
        return
    shown = report.invalid_problems()[:5]
    details = "; ".join(f"line {p.line}: {p.reason}" for p in shown)
    more = f"; and {report.rows_invalid - len(shown)} more" if report.rows_invalid > len(shown) else ""
    noun = "row" if report.rows_invalid == 1 else "rows"
    raise CsvError(source, f"{report.rows_invalid} invalid {noun}, nothing imported: {details}{more}")


def _upsert_file(
    *, meter: Meter, batches: Iterable[ReadingBatch], report: RowReport, run: ImportRun, merge: bool = True
) -> WriteCounts:
    """Upsert a file's batches into the relational store, duplicates settled as a file's are,
    written by whoever runs `run`."""
    staged: Iterator[StagedRows] = (StagedRows.of_meter(meter.pk, batch) for batch in batches)
    by = WriteBy(Write.Channel.FILE, run.written_by)
    counts = upsert_readings(meters=[meter], batches=staged, by=by, report=report, source=run.file_name, merge=merge)
    if counts.inserted or counts.updated:
        meter.refresh_from_db(fields=["reading_count", "first_reading_at", "last_reading_at", "updated_at"])
    return counts


def readings_import(
    *,
    path: Path | str,
    meter_name: str | None = None,
    time_zone: str | None = None,
    ambiguous: Ambiguous = Ambiguous.INFER,
    dry_run: bool = False,
    batch_size: int = DEFAULT_BATCH_SIZE,
    on_progress: Callable[[int, int], None] | None = None,
    account: str | None = None,
    file_name: str | None = None,
    uploaded_by=None,
    written_by: str | None = None,
) -> ImportRun:
    """Import a CSV of readings into the relational store, atomically and idempotently.

    Readings are upserted by (meter, time); the meter is created if missing (owned by the
    account named `account`, which must own it if it exists). `file_name` and `uploaded_by` record
    an upload's own name and who sent it; `written_by` who ran the import ("command:root"; by
    default "user:<uploader>", else "service"), in the run and in the write it commits. Returns the
    finished ImportRun; raises ReadingsImportError (with the failed run) and writes no reading
    when the file has an invalid row or cannot be read.
    """
    path = Path(path)
    owner = owner_named(account)
    run, existing = _start_file_run(
        path=path, meter_name=meter_name, time_zone=time_zone, target=ImportRun.Target.SQL, dry_run=dry_run,
        owner=owner, file_name=file_name, uploaded_by=uploaded_by, written_by=written_by,
    )
    report, counts = RowReport(), WriteCounts()
    with record_run(run=run, report=report, counts=counts):
        with transaction.atomic():
            meter = existing or Meter.objects.create(name=run.meter_name, time_zone=run.time_zone, account=owner)
            batches = read_readings(
                path, time_zone=run.time_zone, ambiguous=ambiguous, report=report, batch_size=batch_size,
                on_progress=on_progress,
            )
            counts.add(_upsert_file(meter=meter, batches=batches, report=report, run=run))
            _raise_if_invalid(report, run.file_name)
            if dry_run:
                transaction.set_rollback(True)
        if not dry_run and not partitioned_store():
            analyze_if_grown(Reading._meta.db_table, counts.inserted)
        if not dry_run or existing:
            run.meter = meter
    return run


def series_store_alias(alias: str | None = None) -> str:
    """The alias of the series store to seed: `alias`, else the only one READINGS_SOURCES has."""
    stores = readings_sources.aliases_serving(SeriesStore)
    if alias is not None and alias not in stores:
        raise ReadingsImportError(
            f"source {alias!r} is not a store readings can be written to (those are: {', '.join(stores) or 'none'})"
        )
    if alias is None and len(stores) != 1:
        found = f"several ({', '.join(stores)}): name one with --source" if stores else "none"
        raise ReadingsImportError(f"READINGS_SOURCES has {found} store readings can be written to")
    return alias or stores[0]


def readings_seed(
    *,
    path: Path | str,
    source_alias: str | None = None,
    meter_name: str | None = None,
    time_zone: str | None = None,
    ambiguous: Ambiguous = Ambiguous.INFER,
    dry_run: bool = False,
    mirror: bool = True,
    create_database: bool = False,
    batch_size: int | None = None,
    on_progress: Callable[[int, int], None] | None = None,
    written_by: str | None = None,
) -> ImportRun:
    """Write a CSV of readings to a series store (InfluxDB), cleaned as `readings_import` cleans it,
    recorded as run by `written_by` (as `readings_import` records it).

    The whole file is checked before the first point is written. With `mirror`, the readings
    are also upserted into the relational store, in a transaction that commits only once every
    point is in the store. Writing the same file again leaves the same points. A failure leaves
    the run marked failed with the points written so far; running again completes it. A meter
    this creates is served by the store it was seeded into.
    """
    path = Path(path)
    alias = series_store_alias(source_alias)
    store = readings_sources[alias]
    run, existing = _start_file_run(
        path=path, meter_name=meter_name, time_zone=time_zone, target=ImportRun.Target.INFLUXDB, dry_run=dry_run,
        written_by=written_by,
    )
    report, counts = RowReport(), WriteCounts()
    with record_run(run=run, report=report, counts=counts):
        store.prepare_writes(create=create_database and not dry_run)
        with transaction.atomic():
            meter = existing or Meter.objects.create(name=run.meter_name, time_zone=run.time_zone, source=alias)
            read = {"time_zone": run.time_zone, "ambiguous": ambiguous}
            batches = read_readings(path, report=report, **read)
            if mirror:
                counts.add(_upsert_file(meter=meter, batches=batches, report=report, run=run))
            else:
                _check_without_storing(meter, path, report, run, read)
            _raise_if_invalid(report, run.file_name)
            if dry_run:
                transaction.set_rollback(True)
            else:
                for batch in read_readings(path, on_progress=on_progress, **read):
                    store.write(
                        meter.name, Series(batch.epochs, batch.values),
                        batch_size=batch_size, on_written=counts.add_points,
                    )
                # A repeated reading was sent twice but is one point: count the readings.
                counts.points = report.rows_read - report.rows_skipped
                if counts.points:
                    note_meters_changed(changes={meter.pk: MeterChange()})
        if not dry_run or existing:
            run.meter = meter
    return run


def _check_without_storing(meter: Meter, path: Path, report: RowReport, run: ImportRun, read: dict) -> None:
    """Read everything (counting invalid rows); stage it only when duplicates are possible."""
    for _ in read_readings(path, report=report, **read):
        pass
    if not report.rows_invalid and not report.strictly_increasing:
        # Times out of order: conflicting duplicates are found the way an import finds them,
        # and counted as skipped in `report`.
        scratch = RowReport(strictly_increasing=False)
        _upsert_file(
            meter=meter, batches=read_readings(path, report=scratch, **read), report=scratch, run=run, merge=False
        )
        report.rows_skipped = scratch.rows_skipped
        report.problems = scratch.problems


def readings_seed_from_db(
    *,
    meter: Meter,
    source_alias: str | None = None,
    dry_run: bool = False,
    create_database: bool = False,
    batch_size: int | None = None,
    written_by: str | None = None,
) -> ImportRun:
    """Write every reading the relational store holds for `meter` to a series store, recorded as
    run by `written_by`."""
    store = readings_sources[series_store_alias(source_alias)]
    relational = _relational_source()
    run = start_run(
        meter_name=meter.name, meter=meter, target=ImportRun.Target.INFLUXDB,
        time_zone=meter.time_zone, dry_run=dry_run, written_by=written_by,
    )
    report, counts = RowReport(), WriteCounts()
    position = None
    with record_run(run=run, report=report, counts=counts):
        store.prepare_writes(create=create_database and not dry_run)
        while True:
            batch = relational.read(meter, start=MIN_EPOCH, end=MAX_EPOCH, after=position, limit=FROM_DB_BATCH)
            if not len(batch):
                break
            report.rows_read += len(batch)
            position = int(batch.times[-1])
            if not dry_run:
                store.write(meter.name, batch, batch_size=batch_size, on_written=counts.add_points)
        if counts.points:
            note_meters_changed(changes={meter.pk: MeterChange()})
    return run


def _relational_source() -> SqlSource:
    aliases = readings_sources.aliases_serving(SqlSource)
    if not aliases:
        raise ImproperlyConfigured("READINGS_SOURCES has no alias served by readings.sources.sql.SqlSource")
    return readings_sources[aliases[0]]
