"""The record of every write: an ImportRun per file (or per seeding), with its counts and the rows
it set aside, finished as succeeded or failed whatever happens in between."""
import hashlib
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from django.db import IntegrityError
from django.db.models import F
from django.utils import timezone

from readings.csvfile import CsvError, CsvReport
from readings.domain import SourceUnavailable
from readings.models import ImportRun, Meter


class ReadingsImportError(Exception):
    """A write that failed and changed nothing it could roll back; `run` is its recorded ImportRun."""

    def __init__(self, message: str, *, run: ImportRun | None = None):
        super().__init__(message)
        self.run = run


@dataclass
class RunCounts:
    """What a write did, as it goes: rows inserted and updated in the relational store (rolled
    back with it on failure), and points that reached a series store (which stay)."""

    inserted: int = 0
    updated: int = 0
    points: int = 0
    # False when the relational store was not written (rows_unchanged then means nothing).
    merged: bool = True

    def add_points(self, count: int) -> None:
        self.points += count


def note_readings_changed(meter: Meter) -> None:
    """Mark that the meter's readings changed (in the transaction of the write, where there is one)."""
    Meter.objects.filter(pk=meter.pk).update(data_version=F("data_version") + 1)


def file_sha256(path: Path) -> str:
    with path.open("rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def run_started(
    *, meter_name: str, meter: Meter | None, target: str, time_zone: str, dry_run: bool, path: Path | None = None
) -> ImportRun:
    """A running ImportRun of `path` (None: the relational store is the input)."""
    return ImportRun.objects.create(
        meter_name=meter_name,
        meter=meter,
        target=target,
        file_name=str(path) if path else "relational store",
        file_size=path.stat().st_size if path else None,
        file_sha256=file_sha256(path) if path else "",
        time_zone=time_zone,
        dry_run=dry_run,
    )


@contextmanager
def run_recorded(run: ImportRun, report: CsvReport, counts: RunCounts):
    """Finish `run` as succeeded with `counts`, or as failed (raising ReadingsImportError for
    the errors a user can act on)."""
    try:
        yield
    except (CsvError, SourceUnavailable) as exc:
        _finish_failed(run, report, counts, str(exc))
        raise ReadingsImportError(str(exc), run=run) from None
    except IntegrityError as exc:
        message = (
            f"{run.file_name}: another import wrote readings of meter {run.meter_name!r} in the same "
            f"range at the same time; nothing was imported, run it again ({exc})"
        )
        _finish_failed(run, report, counts, message)
        raise ReadingsImportError(message, run=run) from None
    except BaseException as exc:
        _finish_failed(run, report, counts, f"{type(exc).__name__}: {exc}")
        raise
    _finish(run, report, counts, status=ImportRun.Status.SUCCEEDED)


def _finish_failed(run: ImportRun, report: CsvReport, counts: RunCounts, error: str) -> None:
    # The relational store rolled back: nothing was inserted or updated there.
    rolled_back = RunCounts(points=counts.points, merged=counts.merged)
    _finish(run, report, rolled_back, status=ImportRun.Status.FAILED, error=error)


def _finish(run: ImportRun, report: CsvReport, counts: RunCounts, *, status: str, error: str = "") -> None:
    run.status = status
    run.error = error
    run.finished_at = timezone.now()
    run.rows_read = report.rows_read
    run.rows_skipped = report.rows_skipped
    run.rows_invalid = report.rows_invalid
    run.rows_inserted = counts.inserted
    run.rows_updated = counts.updated
    run.points_written = counts.points
    if status == ImportRun.Status.SUCCEEDED and counts.merged:
        run.rows_unchanged = report.rows_read - report.rows_skipped - counts.inserted - counts.updated
    run.rejected_rows = [p.as_dict() for p in report.problems]
    run.save()
