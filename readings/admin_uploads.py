"""A CSV file uploaded by staff in admin for one meter: first read in full as a dry run (the counts
and every invalid row shown, nothing stored), then, on confirmation, imported. Both are import runs
recorded with the uploader.

Between the two steps the file waits in Django's cache (shared by every web server with Redis),
under a random key kept in the uploader's session, for UPLOAD_WAIT_SECONDS.
"""
import secrets
import tempfile
from dataclasses import dataclass
from pathlib import Path

from django.core.cache import cache

from readings.models import ImportRun, Meter
from readings.writes.imports import ReadingsImportError, readings_import

UPLOAD_WAIT_SECONDS = 15 * 60
_CACHE_KEY = "readings:upload:{}"


@dataclass
class Preview:
    run: ImportRun  # the dry run, succeeded or failed
    error: str  # why nothing could be stored ("" when the file may be imported)
    token: str  # what confirms the import ("" when it may not)


def _imported(meter: Meter, name: str, content: bytes, *, time_zone: str | None, dry_run: bool, user) -> tuple[ImportRun, str]:
    with tempfile.TemporaryDirectory(prefix="meterusage-upload-") as folder:
        path = Path(folder) / "upload.csv"
        path.write_bytes(content)
        try:
            run = readings_import(
                path=path, meter_name=meter.name, time_zone=time_zone, dry_run=dry_run,
                file_name=name, uploaded_by=user,
            )
            return run, ""
        except ReadingsImportError as exc:
            return exc.run, str(exc)


def preview_upload(meter: Meter, name: str, content: bytes, *, time_zone: str | None, user) -> Preview:
    """Read the whole file as a dry run; if it could be imported, keep it for `confirm_upload`."""
    run, error = _imported(meter, name, content, time_zone=time_zone, dry_run=True, user=user)
    token = ""
    if not error:
        token = secrets.token_urlsafe(16)
        cache.set(_CACHE_KEY.format(token), {"meter": meter.pk, "name": name, "content": content,
                                              "time_zone": time_zone}, UPLOAD_WAIT_SECONDS)
    return Preview(run, error, token)


def confirm_upload(meter: Meter, token: str, *, user) -> tuple[ImportRun | None, str]:
    """Import the file previewed under `token` (once): its run, or None and why not."""
    kept = cache.get(_CACHE_KEY.format(token)) if token else None
    if kept is None or kept["meter"] != meter.pk:
        return None, f"the previewed file is no longer kept (after {UPLOAD_WAIT_SECONDS // 60} minutes); upload it again"
    cache.delete(_CACHE_KEY.format(token))
    return _imported(meter, kept["name"], kept["content"], time_zone=kept["time_zone"], dry_run=False, user=user)
