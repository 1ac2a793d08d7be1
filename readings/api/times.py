"""Times in and out of the HTTP API: RFC 3339 in, local dates and wall times in a zone, RFC 3339
UTC out. `resolve_range` is the one place a request's times become the service's epoch seconds."""
import re
import zoneinfo
from datetime import UTC, datetime

import numpy as np

from readings.models import Meter

# RFC 3339 date-time, or a date alone, or a date and wall time without an offset. Seconds may be
# left out and fractions are dropped (the service works in whole seconds).
_TIME = re.compile(
    r"([0-9]{4}-[0-9]{2}-[0-9]{2})"
    r"(?:[Tt ]([0-9]{2}:[0-9]{2})(?::([0-9]{2})(?:[.][0-9]{1,9})?)?([Zz]|[+-][0-9]{2}:[0-9]{2})?)?"
)
# The same syntax in the OpenAPI schema, which cannot tell whether such a date exists. (Surrounding
# spaces are trimmed before parsing.)
TIME_PATTERN = f"^{_TIME.pattern}$"


def parse_time(text: str) -> datetime:
    """An aware datetime for a time with an offset; a naive one (local wall time) for a date or a
    time without an offset. ValueError with a reason for anything else."""
    match = _TIME.fullmatch(text.strip())
    if not match:
        raise ValueError("must be an RFC 3339 time such as 2019-01-01T00:15:00Z, or a date such as 2019-01-01")
    day, clock, second, offset = match.groups()
    iso = f"{day}T{clock or '00:00'}:{second or '00'}"
    if offset:
        iso += "+00:00" if offset in "Zz" else offset
    try:
        return datetime.fromisoformat(iso)
    except ValueError:
        raise ValueError(f"{text.strip()!r} is not a date and time that exists") from None


def _epoch_seconds(moment: datetime, zone: zoneinfo.ZoneInfo) -> int:
    """Whole UTC seconds of `moment`; a naive one is a wall time in `zone` (the first, on a
    repeated hour; a wall time skipped by a clock change reads as just after the change)."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=zone)
    return int(moment.timestamp())


def resolve_range(
    *, meter: str, start: datetime, end: datetime, zone: zoneinfo.ZoneInfo | None
) -> tuple[int, int]:
    """[start, end) of a request in epoch seconds. Local times (naive) are read in `zone`, else in
    the meter's zone (a setting of the relational store), else in UTC: an unknown meter is left
    for the service to report."""
    if zone is None and (start.tzinfo is None or end.tzinfo is None):
        name = Meter.objects.filter(name=meter).values_list("time_zone", flat=True).first()
        zone = zoneinfo.ZoneInfo(name or "UTC")
    return _epoch_seconds(start, zone), _epoch_seconds(end, zone)


def rfc3339(seconds) -> list[str]:
    """RFC 3339 UTC strings ("2019-01-01T00:15:00Z") of epoch seconds, in one vectorised step."""
    return np.datetime_as_string(np.asarray(seconds, dtype="datetime64[s]"), unit="s", timezone="UTC").tolist()


def rfc3339_one(second: int) -> str:
    return datetime.fromtimestamp(second, UTC).isoformat().replace("+00:00", "Z")
