"""Readings sources: the stores that serve readings, chosen per meter by `Meter.source`.

Configured like Django's STORAGES, and looked up the same way (`readings_sources[alias]`)::

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
from django.utils.functional import cached_property
from django.utils.module_loading import import_string

from readings.sources.base import (
    BucketStats,
    Extremes,
    Jumps,
    MeterSummary,
    ReadingsSource,
    Series,
    SeriesStore,
    SourceUnavailable,
)

__all__ = [
    "BucketStats", "Extremes", "Jumps", "MeterSummary", "ReadingsSource", "Series", "SeriesStore",
    "SourceUnavailable", "SourcesHandler", "get_source", "readings_sources",
]


class SourcesHandler:
    """The configured sources by alias, each built once per process on first use.

    `backends` defaults to settings.READINGS_SOURCES; a test may pass its own.
    """

    def __init__(self, backends: dict | None = None):
        self._backends = backends
        self._sources: dict[str, ReadingsSource] = {}
        self._lock = threading.Lock()

    @cached_property
    def backends(self) -> dict:
        return settings.READINGS_SOURCES if self._backends is None else self._backends

    def __getitem__(self, alias: str) -> ReadingsSource:
        source = self._sources.get(alias)
        if source is None:
            with self._lock:
                source = self._sources.get(alias)
                if source is None:
                    source = self._sources[alias] = self.create_source(alias)
        return source

    def __iter__(self):
        return iter(self.backends)

    def create_source(self, alias: str) -> ReadingsSource:
        """A new source for `alias`, from its entry in `backends`."""
        config = self.backends.get(alias)
        if config is None:
            raise ImproperlyConfigured(f"READINGS_SOURCES has no alias {alias!r} (it has: {', '.join(self.backends)})")
        try:
            backend = import_string(config["BACKEND"])
        except KeyError:
            raise ImproperlyConfigured(f"READINGS_SOURCES[{alias!r}] has no BACKEND") from None
        except ImportError as exc:
            raise ImproperlyConfigured(
                f"READINGS_SOURCES[{alias!r}]: cannot import {config['BACKEND']!r}: {exc}"
            ) from None
        try:
            return backend(alias=alias, **config.get("OPTIONS", {}))
        except TypeError as exc:
            raise ImproperlyConfigured(f"READINGS_SOURCES[{alias!r}]: bad OPTIONS: {exc}") from None

    def aliases_serving(self, kind: type) -> list[str]:
        """Aliases whose source is a `kind` (a class or a runtime-checkable protocol such as
        SeriesStore), in settings order; aliases that cannot be built are left out."""
        aliases = []
        for alias in self:
            try:
                source = self[alias]
            except ImproperlyConfigured:
                continue
            if isinstance(source, kind):
                aliases.append(alias)
        return aliases

    def reset(self) -> None:
        with self._lock:
            self._sources = {}
            self.__dict__.pop("backends", None)


readings_sources = SourcesHandler()


def get_source(alias: str) -> ReadingsSource:
    """The source configured as `alias`; ImproperlyConfigured naming it when there is none."""
    return readings_sources[alias]


@receiver(setting_changed)
def _reset_sources(*, setting, **kwargs):
    if setting in ("READINGS_SOURCES", "INFLUXDB"):
        readings_sources.reset()
