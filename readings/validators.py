import zoneinfo
from datetime import timedelta

from django.core.exceptions import ValidationError


def zone_named(name: str) -> zoneinfo.ZoneInfo:
    """The IANA zone `name`; ValueError naming it (cut to 64 characters) when there is none."""
    try:
        return zoneinfo.ZoneInfo(name)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError, OSError):  # OSError: a folder, a name too long
        raise ValueError(f"{name[:64]!r} is not an IANA time zone such as Europe/Amsterdam") from None


def validate_time_zone(value: str) -> None:
    if value not in zoneinfo.available_timezones():
        raise ValidationError("%(value)s is not an IANA time zone name.", params={"value": value})


def validate_interval(value: timedelta) -> None:
    seconds = value.total_seconds()
    if seconds <= 0 or seconds != int(seconds) or 86400 % seconds:
        raise ValidationError("The interval must be a whole number of seconds that divides a day.")


def validate_source_alias(value: str) -> None:
    from django.conf import settings

    if value not in settings.READINGS_SOURCES:
        raise ValidationError(
            "%(value)s is not an alias in READINGS_SOURCES (%(aliases)s).",
            params={"value": value, "aliases": ", ".join(settings.READINGS_SOURCES)},
        )
