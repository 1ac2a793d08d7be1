"""Reads: meters, readings, aggregates and completeness, from the source that serves each meter.

Times are UTC epoch seconds; ranges are half-open [start, end). Every function validates its
arguments and raises InvalidArgument, MeterNotFound or SourceUnavailable.
"""
import logging
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
from django.core.exceptions import ImproperlyConfigured

from readings import tokens
from readings.errors import FieldViolation, InvalidArgument, MeterNotFound
from readings.models import Meter
from readings.sources import BucketStats, Extremes, MeterSummary, ReadingsSource, Series, SourceUnavailable, get_source
from readings.validators import zone_named
from readings.windows import Window, expected_slots, window_edges

logger = logging.getLogger(__name__)

METERS_PAGE_SIZE = (100, 1000)  # default, maximum
READINGS_PAGE_SIZE = (1000, 10_000)
# Readings per stream message: about 16k readings (≈200 kB) reach the decoding client's limit
# while keeping the first message quick (bench/grpc_bench.py).
STREAM_BATCH_SIZE = (16_384, 50_000)
MAX_BUCKETS = 100_000
MAX_COMPLETENESS_SLOTS = 1_000_000
GAPS_KEPT = 10_000


def _page_size(value: int, field: str, limits: tuple[int, int]) -> int:
    default, maximum = limits
    if value < 0:
        raise InvalidArgument(FieldViolation(field, f"must not be negative (got {value})"))
    return min(value or default, maximum)


# Within the span of google.protobuf.Timestamp and Python's datetime (years 1 to 9999), a day
# short at each end so that local times in any zone stay representable.
MIN_EPOCH, MAX_EPOCH = -62_135_510_400, 253_402_214_400


def _check_range(start: int | None, end: int | None) -> tuple[int, int]:
    violations = []
    for field, value in (("start_time", start), ("end_time", end)):
        if value is None:
            violations.append(FieldViolation(field, "is required"))
        elif not MIN_EPOCH <= value <= MAX_EPOCH:
            violations.append(FieldViolation(field, "must lie between 0001-01-02 and 9999-12-30"))
    if not violations and start >= end:
        violations.append(FieldViolation("end_time", "must be after the start of the range"))
    if violations:
        raise InvalidArgument(*violations)
    return start, end


def meter_get(name: str) -> Meter:
    if not name:
        raise InvalidArgument(FieldViolation("meter", "is required"))
    max_length = Meter._meta.get_field("name").max_length
    if len(name) > max_length:
        raise InvalidArgument(FieldViolation("meter", f"is longer than {max_length} characters"))
    try:
        return Meter.objects.get(name=name)
    except Meter.DoesNotExist:
        raise MeterNotFound(name) from None


def source_of(meter: Meter) -> ReadingsSource:
    try:
        return get_source(meter.source)
    except ImproperlyConfigured as exc:
        raise SourceUnavailable(f"meter {meter.name!r} names source {meter.source!r}: {exc}") from None


def meter_page(*, page_size: int, page_token: str) -> tuple[list[tuple[Meter, MeterSummary]], str]:
    """A page of meters in name order, each with its reading summary, and the next page's token."""
    size = _page_size(page_size, "page_size", METERS_PAGE_SIZE)
    meters = Meter.objects.order_by("name")
    if page_token:
        after = tokens.redeem("meters", page_token, field="page_token", request_fields=())
        meters = meters.filter(name__gt=after)
    page = list(meters[: size + 1])
    more = len(page) > size
    page = page[:size]
    next_token = tokens.issue("meters", position=page[-1].name, request_fields=()) if more else ""
    return [(meter, meter_summary(meter)) for meter in page], next_token


def meter_summary(meter: Meter) -> MeterSummary:
    """The meter's count and first/last reading from its source, or, while that source is
    down, as the relational store last recorded them: one broken store must not hide the rest."""
    try:
        return source_of(meter).summary(meter)
    except SourceUnavailable as exc:
        logger.warning("summary of meter %s from the relational store: %s", meter.name, exc)
        return meter.cached_summary()


def _continued_range(
    *, kind: str, meter_name: str, start: int | None, end: int | None, token: str, token_field: str
) -> tuple[Meter, int, int, int | None, tuple]:
    """The meter, the checked range, the position a token continues after (None without one)
    and the request fields tokens of this request are bound to."""
    meter = meter_get(meter_name)
    start, end = _check_range(start, end)
    request_fields = (meter_name, start, end)
    after = tokens.redeem(kind, token, field=token_field, request_fields=request_fields) if token else None
    return meter, start, end, after, request_fields


def reading_page(
    *, meter_name: str, start: int | None, end: int | None, page_size: int, page_token: str
) -> tuple[Series, str]:
    """A page of readings in [start, end), oldest first, and the next page's token ("" at the end)."""
    size = _page_size(page_size, "page_size", READINGS_PAGE_SIZE)
    meter, start, end, after, request_fields = _continued_range(
        kind="readings", meter_name=meter_name, start=start, end=end, token=page_token, token_field="page_token"
    )
    # One reading more than the page tells whether another page follows.
    series = source_of(meter).read(meter, start=start, end=end, after=after, limit=size + 1)
    if len(series) <= size:
        return series, ""
    page = Series(series.times[:size], series.values[:size])
    return page, tokens.issue("readings", position=int(page.times[-1]), request_fields=request_fields)


def reading_batches(
    *, meter_name: str, start: int | None, end: int | None, batch_size: int, resume_token: str
) -> Iterator[tuple[Series, str]]:
    """Batches of the readings in [start, end), each with the token that resumes after it.

    Arguments are checked here, before the first batch is read; the store is read one batch at a
    time, so a consumer that stops iterating stops the reads.
    """
    size = _page_size(batch_size, "batch_size", STREAM_BATCH_SIZE)
    meter, start, end, after, request_fields = _continued_range(
        kind="stream", meter_name=meter_name, start=start, end=end, token=resume_token, token_field="resume_token"
    )
    source = source_of(meter)

    def batches():
        position = after
        while True:
            batch = source.read(meter, start=start, end=end, after=position, limit=size)
            if not len(batch):
                return
            position = int(batch.times[-1])
            yield batch, tokens.issue("stream", position=position, request_fields=request_fields)
            if len(batch) < size:
                return

    return batches()


@dataclass(frozen=True)
class Aggregates:
    edges: np.ndarray
    expected: np.ndarray
    stats: BucketStats
    extremes: Extremes | None
    time_zone: str


def reading_aggregates(
    *, meter_name: str, start: int | None, end: int | None, window: Window | None, time_zone: str
) -> Aggregates:
    """Stats per window of [start, end), windows aligned in `time_zone` (default: the meter's)."""
    meter = meter_get(meter_name)
    start, end = _check_range(start, end)
    if window is None:
        raise InvalidArgument(FieldViolation("window", "is required: 15m, hour, day, week or month"))
    try:
        zone = zone_named(time_zone or meter.time_zone)
    except ValueError as exc:
        raise InvalidArgument(FieldViolation("time_zone", str(exc))) from None
    approximate = (end - start) // {Window.FIFTEEN_MINUTES: 900, Window.HOUR: 3600}.get(window, 86400)
    if approximate > MAX_BUCKETS:
        raise InvalidArgument(
            FieldViolation("end_time", f"the range holds more than {MAX_BUCKETS} windows; use a wider window")
        )
    edges = window_edges(start=start, end=end, window=window, zone=zone)
    source = source_of(meter)
    stats = source.aggregate(meter, edges=edges, zone=zone.key)
    interval = int(meter.interval.total_seconds())
    return Aggregates(
        edges=edges,
        expected=expected_slots(edges[:-1], edges[1:], interval),
        stats=stats,
        extremes=source.extremes(meter, start=start, end=end) if stats.counts.any() else None,
        time_zone=zone.key,
    )


@dataclass(frozen=True)
class Completeness:
    interval: int
    expected: int
    present: int
    gaps: list[tuple[int, int, int]]  # start, end, missing slots
    gap_count: int

    @property
    def missing(self) -> int:
        return max(self.expected - self.present, 0)


def reading_completeness(*, meter_name: str, start: int | None, end: int | None) -> Completeness:
    """Expected and present slots of [start, end) at the meter's interval, and the gaps."""
    meter = meter_get(meter_name)
    start, end = _check_range(start, end)
    interval = int(meter.interval.total_seconds())
    first_slot = -(-start // interval) * interval
    end_slot = -(-end // interval) * interval
    expected = (end_slot - first_slot) // interval
    if expected > MAX_COMPLETENESS_SLOTS:
        raise InvalidArgument(
            FieldViolation("end_time", f"the range holds {expected} slots, more than {MAX_COMPLETENESS_SLOTS}")
        )
    jumps = source_of(meter).jumps(meter, start=start, end=end, interval=interval)
    if jumps.count == 0:
        runs = [(first_slot, end_slot)] if expected else []
    else:
        runs = [(first_slot, jumps.first)] if jumps.first > first_slot else []
        runs += [(previous + interval, following) for previous, following in jumps.pairs]
        if jumps.last + interval < end_slot:
            runs.append((jumps.last + interval, end_slot))
    gaps = [(max(a, start), min(b, end), -(-(b - a) // interval)) for a, b in runs[:GAPS_KEPT]]
    return Completeness(interval, expected, jumps.count, gaps, len(runs))
