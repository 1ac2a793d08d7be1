"""The interface every readings source implements, and the values it returns.

Times cross this interface as int64 UTC epoch seconds in numpy arrays: cheap to move in bulk,
and the same for every store.
"""
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol, runtime_checkable

import numpy as np

from readings.domain import SourceUnavailable

if TYPE_CHECKING:
    from readings.models import Meter

__all__ = [
    "BucketStats", "Extremes", "Jumps", "MeterSummary", "ReadingsSource", "Series", "SeriesStore",
    "SourceUnavailable", "bucket_index_stats", "extremes_of", "jumps_of",
]

@dataclass(frozen=True)
class Series:
    """Readings in time order: `times` (int64 epoch seconds) and `values` (float64)."""

    times: np.ndarray
    values: np.ndarray

    def __len__(self) -> int:
        return len(self.times)

    @classmethod
    def from_rows(cls, rows) -> "Series":
        """From (epoch, value) rows. Epochs pass through float64 exactly (they are far below 2**53)."""
        if not rows:
            return cls(np.empty(0, dtype=np.int64), np.empty(0, dtype=np.float64))
        table = np.array(rows, dtype=np.float64)
        return cls(table[:, 0].astype(np.int64), table[:, 1].copy())


@dataclass(frozen=True)
class Extremes:
    """Where the smallest and largest values of a range are (earliest time on ties)."""

    min_time: int
    min_value: float
    max_time: int
    max_value: float


@dataclass(frozen=True)
class BucketStats:
    """Per bucket: count, sum, min and max (NaN min/max where empty); and the extremes of the
    whole range (None when it holds no reading)."""

    counts: np.ndarray
    sums: np.ndarray
    mins: np.ndarray
    maxs: np.ndarray
    extremes: Extremes | None = None

    @classmethod
    def from_rows(cls, size: int, rows) -> "BucketStats":
        """From (bucket index, count, sum, min, max) rows; buckets absent from rows are empty."""
        stats = cls(
            np.zeros(size, dtype=np.int64),
            np.zeros(size, dtype=np.float64),
            np.full(size, np.nan),
            np.full(size, np.nan),
        )
        for index, count, total, low, high in rows:
            stats.counts[index] = count
            stats.sums[index] = total
            stats.mins[index] = low
            stats.maxs[index] = high
        return stats

    def with_extremes(self, extremes: Extremes | None) -> "BucketStats":
        return BucketStats(self.counts, self.sums, self.mins, self.maxs, extremes)

    def first_buckets_of_extremes(self) -> tuple[int, int] | None:
        """The earliest bucket holding the smallest value and the earliest holding the largest:
        where the extremes' times are (None without readings)."""
        filled = self.counts > 0
        if not filled.any():
            return None
        low = np.flatnonzero(filled & (self.mins == np.nanmin(self.mins[filled])))[0]
        high = np.flatnonzero(filled & (self.maxs == np.nanmax(self.maxs[filled])))[0]
        return int(low), int(high)


@dataclass(frozen=True)
class Jumps:
    """Enough to find the gaps of a range, in slots (reading times floored to the interval): how
    many slots hold a reading, the first and last of them, and every pair of consecutive such
    slots further apart than the interval."""

    count: int
    first: int | None
    last: int | None
    pairs: list[tuple[int, int]]


@dataclass(frozen=True)
class MeterSummary:
    """How many readings a meter has, and the epoch seconds of its first and last one."""

    count: int
    first: int | None
    last: int | None


class ReadingsSource(Protocol):
    """A store of readings. Ranges are [start, end) in epoch seconds."""

    alias: str

    def summary(self, meter: "Meter") -> MeterSummary:
        """How many readings the meter has, and its first and last time."""

    def read(self, meter: "Meter", *, start: int, end: int, after: int | None, limit: int) -> Series:
        """Up to `limit` readings in [start, end), later than `after` when given, oldest first."""

    def aggregate(self, meter: "Meter", *, edges: np.ndarray, zone: str = "UTC") -> BucketStats:
        """Stats of the buckets [edges[i], edges[i+1]), computed in the store where it can, and
        the smallest and largest value of [edges[0], edges[-1]) with their times. `zone` is the
        IANA zone the edges were drawn in, for stores that group by local days."""

    def jumps(self, meter: "Meter", *, start: int, end: int, interval: int) -> Jumps:
        """Count, first and last time, and consecutive times more than `interval` apart."""


@runtime_checkable
class SeriesStore(Protocol):
    """A source that readings can also be written to (seeding, live writes), besides the
    relational store that records every write."""

    alias: str

    def prepare_writes(self, *, create: bool = False) -> None:
        """Fail early when the store cannot take writes (unreachable, refused, no database);
        with `create`, create what is missing first."""

    def write(self, meter_name: str, series: Series, *, batch_size: int | None = None, on_written=None) -> int:
        """Write the readings, idempotently (a reading written twice is one), in requests of
        `batch_size` (the store's default when None), calling `on_written(n)` as each lands;
        returns how many were written."""


def bucket_index_stats(times: np.ndarray, values: np.ndarray, edges: np.ndarray) -> BucketStats:
    """Bucket stats and extremes of sorted in-memory readings, summed in time order like a
    database would."""
    bounds = np.searchsorted(times, edges, side="left")
    counts = np.diff(bounds).astype(np.int64)
    size = len(counts)
    sums = np.zeros(size)
    mins = np.full(size, np.nan)
    maxs = np.full(size, np.nan)
    filled = np.flatnonzero(counts)
    if len(filled):
        starts = bounds[:-1][filled]
        window = values[: bounds[-1]]
        # reduceat runs from each start to the next one: empty buckets between them hold nothing.
        sums[filled] = np.add.reduceat(window, starts)
        mins[filled] = np.minimum.reduceat(window, starts)
        maxs[filled] = np.maximum.reduceat(window, starts)
    return BucketStats(counts, sums, mins, maxs, extremes_of(times[bounds[0] : bounds[-1]], values[bounds[0] : bounds[-1]]))


def extremes_of(times: np.ndarray, values: np.ndarray) -> Extremes | None:
    """Extremes of in-memory readings in time order (argmin/argmax take the first: the earliest)."""
    if not len(times):
        return None
    low, high = int(np.argmin(values)), int(np.argmax(values))
    return Extremes(int(times[low]), float(values[low]), int(times[high]), float(values[high]))


def jumps_of(times: np.ndarray, interval: int) -> Jumps:
    """Jumps of in-memory reading times, each counted in its slot (the multiple of `interval` at
    or before it), so that readings off the grid fill their slot rather than open a gap."""
    slots = np.unique(times - times % interval)
    if not len(slots):
        return Jumps(0, None, None, [])
    far = np.flatnonzero(np.diff(slots) > interval)
    pairs = list(zip(slots[far].tolist(), slots[far + 1].tolist()))
    return Jumps(len(slots), int(slots[0]), int(slots[-1]), pairs)
