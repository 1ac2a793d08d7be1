import zoneinfo
from datetime import timedelta

from django.core.exceptions import ValidationError


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
