"""Readings sources: the stores that serve readings, chosen per meter by `Meter.source`.

Configured like Django's STORAGES::

    READINGS_SOURCES = {
        "default": {"BACKEND": "readings.sources.sql.SqlSource", "OPTIONS": {}},
        "csv": {"BACKEND": "readings.sources.csv.CsvSource", "OPTIONS": {"DIRECTORY": "data"}},
    }
"""
import threading

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.core.signals import setting_changed
from django.dispatch import receiver
from django.utils.module_loading import import_string

from readings.sources.base import (
    BucketStats,
    Extremes,
    Jumps,
    MeterSummary,
    ReadingsSource,
    Series,
    SourceUnavailable,
)

__all__ = [
    "BucketStats", "Extremes", "Jumps", "MeterSummary", "ReadingsSource", "Series",
    "SourceUnavailable", "get_source", "source_aliases",
]

_sources: dict[str, ReadingsSource] = {}
_lock = threading.Lock()


def source_aliases() -> list[str]:
    return list(settings.READINGS_SOURCES)


def build_source(alias: str) -> ReadingsSource:
    """A new source for `alias`, from its READINGS_SOURCES entry."""
    config = settings.READINGS_SOURCES.get(alias)
    if config is None:
        raise ImproperlyConfigured(
            f"READINGS_SOURCES has no alias {alias!r} (it has: {', '.join(settings.READINGS_SOURCES)})"
        )
    try:
        backend = import_string(config["BACKEND"])
    except KeyError:
        raise ImproperlyConfigured(f"READINGS_SOURCES[{alias!r}] has no BACKEND") from None
    except ImportError as exc:
        raise ImproperlyConfigured(f"READINGS_SOURCES[{alias!r}]: cannot import {config['BACKEND']!r}: {exc}") from None
    try:
        return backend(alias=alias, **config.get("OPTIONS", {}))
    except TypeError as exc:
        raise ImproperlyConfigured(f"READINGS_SOURCES[{alias!r}]: bad OPTIONS: {exc}") from None


def get_source(alias: str) -> ReadingsSource:
    """The source for `alias`, built once per process."""
    source = _sources.get(alias)
    if source is None:
        with _lock:
            source = _sources.get(alias) or build_source(alias)
            _sources[alias] = source
    return source


@receiver(setting_changed)
def _forget_sources(*, setting, **kwargs):
    if setting in ("READINGS_SOURCES", "INFLUXDB"):
        _sources.clear()
