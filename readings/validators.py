"""Django validators of the models' fields, each one a thin wrapper of a rule in readings.domain."""
from datetime import timedelta

from django.core.exceptions import ValidationError

from readings.domain import check_meter_name, time_zone_named


def validate_meter_name(value: str) -> None:
    try:
        check_meter_name(value)
    except ValueError as exc:
        raise ValidationError("The name %(reason)s.", params={"reason": exc}) from None


def validate_time_zone(value: str) -> None:
    try:
        time_zone_named(value)
    except ValueError as exc:
        raise ValidationError("%(reason)s.", params={"reason": exc}) from None


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
