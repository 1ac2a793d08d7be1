"""Readings served straight from CSV files, cleaned as the importer cleans them.

A file is read once into two sorted numpy columns and answered by binary search; it is read
again when it changes on disk.
"""
import os
import threading
from collections import OrderedDict
from pathlib import Path

import numpy as np

from readings.csvreader import CsvError, read_readings
from readings.models import Meter
from readings.sources.base import (
    BucketStats,
    Jumps,
    MeterSummary,
    Series,
    SourceUnavailable,
    bucket_index_stats,
    jumps_of,
)
from readings.writes.rows import Ambiguous, RowReport


class CsvSource:
    """OPTIONS: FILES, a mapping of meter name to CSV path, and/or DIRECTORY, where a meter's
    file is `<DIRECTORY>/<meter name>.csv`; FILES_KEPT, how many loaded files stay in memory
    (default 64, the least recently used go first). Naive times are read in the meter's zone,
    those of an hour that repeats as AMBIGUOUS says ("infer", the default, "earlier", "later")."""

    def __init__(
        self,
        *,
        alias: str,
        FILES: dict[str, str] | None = None,
        DIRECTORY: str | None = None,
        FILES_KEPT: int = 64,
        AMBIGUOUS: str = Ambiguous.INFER.value,
    ):
        self.alias = alias
        self.files_kept = FILES_KEPT
        self.ambiguous = Ambiguous(AMBIGUOUS)
        self.files = {name: Path(path) for name, path in (FILES or {}).items()}
        self.directory = Path(DIRECTORY) if DIRECTORY else None
        # Files recently served, most recent last; bounded, since a DIRECTORY may hold thousands.
        self._loaded: OrderedDict[tuple, Series] = OrderedDict()
        self._lock = threading.Lock()

    @property
    def store(self) -> str:
        return f"CSV source {self.alias!r}"

    def _unavailable(self, message: str) -> SourceUnavailable:
        return SourceUnavailable(f"{self.store}: {message}", store=self.store)

    def path_for(self, meter: Meter) -> Path:
        if meter.name in self.files:
            return self.files[meter.name]
        if self.directory is not None:
            # Strictly a file of DIRECTORY itself, whatever the name holds ("../x", "a/b").
            path = Path(os.path.normpath(self.directory / f"{meter.name}.csv"))
            if path.parent != Path(os.path.normpath(self.directory)):
                raise self._unavailable(f"meter name {meter.name!r} does not name a file of {self.directory}")
            return path
        raise self._unavailable(f"no file for meter {meter.name!r}")

    def series(self, meter: Meter) -> Series:
        path = self.path_for(meter)
        try:
            stat = path.stat()
        except OSError as exc:
            raise self._unavailable(f"cannot read {path}: {exc.strerror}") from None
        key = (str(path), stat.st_mtime_ns, stat.st_size, meter.time_zone)
        with self._lock:
            series = self._loaded.get(key)
            if series is not None:
                self._loaded.move_to_end(key)
                return series
        try:
            series = _load(path, meter.time_zone, self.ambiguous)
        except CsvError as exc:
            raise self._unavailable(str(exc)) from None
        with self._lock:
            for stale in [k for k in self._loaded if k[0] == key[0]]:
                del self._loaded[stale]
            self._loaded[key] = series
            while len(self._loaded) > self.files_kept:
                self._loaded.popitem(last=False)
        return series

    def summary(self, meter: Meter) -> MeterSummary:
        series = self.series(meter)
        if not len(series):
            return MeterSummary(0, None, None)
        return MeterSummary(len(series), int(series.times[0]), int(series.times[-1]))

    def _slice(self, meter: Meter, start: int, end: int) -> Series:
        series = self.series(meter)
        low, high = np.searchsorted(series.times, [start, end], side="left")
        return Series(series.times[low:high], series.values[low:high])

    def read(self, meter: Meter, *, start: int, end: int, after: int | None, limit: int) -> Series:
        if after is not None and after >= start:
            start = after + 1
        part = self._slice(meter, start, end)
        return Series(part.times[:limit], part.values[:limit])

    def aggregate(self, meter: Meter, *, edges: np.ndarray, zone: str = "UTC") -> BucketStats:
        series = self.series(meter)
        return bucket_index_stats(series.times, series.values, edges)

    def jumps(self, meter: Meter, *, start: int, end: int, interval: int) -> Jumps:
        return jumps_of(self._slice(meter, start, end).times, interval)


def _load(path: Path, time_zone: str, ambiguous: Ambiguous) -> Series:
    """The file's readings, sorted and without repeats; CsvError for an invalid row or two
    values at one time."""
    report = RowReport()
    batches = list(read_readings(path, time_zone=time_zone, ambiguous=ambiguous, report=report))
    if report.rows_invalid:
        first = report.invalid_problems()[0]
        raise CsvError(path, first.reason, line=first.line)
    if not batches:
        return Series.from_rows([])
    times = np.concatenate([b.epochs for b in batches])
    values = np.concatenate([b.values for b in batches])
    order = np.argsort(times, kind="stable")
    times, values = times[order], values[order]
    repeated = np.flatnonzero(np.diff(times) == 0)
    conflicting = repeated[values[repeated] != values[repeated + 1]]
    if len(conflicting):
        lines = np.concatenate([b.lines for b in batches])[order]
        i = int(conflicting[0])
        raise CsvError(path, f"lines {lines[i]} and {lines[i + 1]} give one time two values")
    keep = np.ones(len(times), dtype=bool)
    keep[repeated + 1] = False
    return Series(times[keep], values[keep])
