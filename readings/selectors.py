"""Reads: meters, readings, aggregates and completeness, from the source that serves each meter.

Times are UTC epoch seconds; ranges are half-open [start, end). Every function validates its
arguments and raises InvalidArgument, MeterNotFound or SourceUnavailable.
"""
import logging
import time
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
from django.core.exceptions import ImproperlyConfigured
from django.db.models import Q
from django.db.models.signals import post_delete, post_save
from django.dispatch import receiver

from accounts.access import SERVICE, Caller
from readings import tokens
from readings.domain import (
    GAPS_KEPT,
    Instant,
    MAX_BUCKETS,
    MAX_COMPLETENESS_SLOTS,
    METER_ORDERINGS,
    METERS_PAGE_SIZE,
    READINGS_PAGE_SIZE,
    SEARCH_MAX_LENGTH,
    STREAM_BATCH_SIZE,
    FieldViolation,
    InvalidArgument,
    MeterNotFound,
    Window,
    check_meter_name,
    instant_violation,
    slots_between,
    slots_from,
    time_zone_named,
)
from readings.models import Meter
from readings.sources import (
    BucketStats,
    Extremes,
    MeterSummary,
    ReadingsSource,
    Series,
    SourceUnavailable,
    get_source,
)
from readings.windows import window_edges

logger = logging.getLogger(__name__)



class _Checks:
    """What is wrong with a request, collected so that one error names every offending field."""

    def __init__(self):
        self.violations: list[FieldViolation] = []

    def fail(self, field: str, description: str) -> None:
        self.violations.append(FieldViolation(field, description))

    def page_size(self, value: int, field: str, limits: tuple[int, int]) -> int:
        default, maximum = limits
        if value < 0:
            self.fail(field, f"must not be negative (got {value})")
        return min(max(value, 0) or default, maximum)

    def meter_name(self, name: str, field: str = "meter") -> None:
        try:
            check_meter_name(name)
        except ValueError as exc:
            self.fail(field, str(exc))

    def time_range(self, start: Instant | int | None, end: Instant | int | None) -> tuple[int, int] | None:
        """[start, end) in whole seconds: the seconds from the first at or after start to the
        first at or after end (readings are at whole seconds). None when it is not a range."""
        times = {}
        for field, value in (("start_time", start), ("end_time", end)):
            if value is None:
                self.fail(field, "is required")
                continue
            value = value if isinstance(value, Instant) else Instant(value)
            violation = instant_violation(field, value)
            if violation is not None:
                self.violations.append(violation)
            else:
                times[field] = value
        if len(times) < 2:
            return None
        if times["end_time"] <= times["start_time"]:
            self.fail("end_time", "must be after the start of the range")
            return None
        return times["start_time"].ceil(), times["end_time"].ceil()

    def raise_if_any(self) -> None:
        if self.violations:
            raise InvalidArgument(*self.violations)


# Who a meter is, kept for a moment: looking it up costs about as much as a month's aggregate.
# A read-only cache: a change in admin (a new source, zone) is served within the moment.
METER_CACHE_SECONDS = 1.0
_meters: dict[str, tuple[float, Meter]] = {}


def _meter(name: str, caller: Caller) -> Meter:
    """The meter named `name`, if `caller` may see it: one it may not see is as missing as one
    that does not exist (MeterNotFound either way, the same words)."""
    now = time.monotonic()
    kept = _meters.get(name)
    if kept is not None and kept[0] > now:
        meter = kept[1]
    else:
        try:
            meter = Meter.objects.get(name=name)
        except Meter.DoesNotExist:
            raise MeterNotFound(name) from None
        if len(_meters) > 10_000:
            _meters.clear()
        _meters[name] = (now + METER_CACHE_SECONDS, meter)
    if not caller.sees(meter):
        raise MeterNotFound(name)
    return meter


@receiver([post_save, post_delete], sender=Meter)
def _forget_meter(sender, instance, **kwargs):
    _meters.pop(instance.name, None)


def forget_meters() -> None:
    """Drop every meter kept (tests make meters of the same names again and again)."""
    _meters.clear()


def source_of(meter: Meter) -> ReadingsSource:
    try:
        return get_source(meter.source)
    except ImproperlyConfigured as exc:
        raise SourceUnavailable(
            f"meter {meter.name!r} names source {meter.source!r}: {exc}", store=f"source {meter.source!r}"
        ) from None


# ---- Meters --------------------------------------------------------------------------------


@dataclass(frozen=True)
class MeterEntry:
    """A meter and its readings' summary from its source; while that source cannot answer,
    no summary and the store that is down (one broken store must not hide the other meters)."""

    meter: Meter
    summary: MeterSummary | None
    unavailable: str = ""


@dataclass(frozen=True)
class MeterFilters:
    """Each filter set narrows the list; `search` matches part of the name or description."""

    search: str = ""
    source: str = ""
    time_zone: str = ""
    unit: str = ""
    has_readings: bool | None = None


# Orderings by a figure of the readings need every matching meter's summary; by name, one page's.


@dataclass(frozen=True)
class MeterPage:
    entries: list[MeterEntry]
    next_page_token: str
    total_size: int


def meter_entry(meter: Meter) -> MeterEntry:
    try:
        return MeterEntry(meter, source_of(meter).summary(meter))
    except SourceUnavailable as exc:
        logger.warning("summary of meter %s: %s", meter.name, exc)
        return MeterEntry(meter, None, exc.store)


def meter_detail(*, name: str, caller: Caller = SERVICE) -> MeterEntry:
    """One meter with its readings' summary."""
    checks = _Checks()
    checks.meter_name(name, field="name")
    checks.raise_if_any()
    return meter_entry(_meter(name, caller))


def _ordering(order_by: str, checks: _Checks) -> tuple[str, bool]:
    """(field, descending) of an AIP-132 order_by such as "reading_count desc"."""
    words = order_by.split()
    if not words:
        return "name", False
    field, direction = words[0], words[1:]
    if field not in METER_ORDERINGS or direction not in ([], ["asc"], ["desc"]):
        checks.fail("order_by", f"must be one of {', '.join(METER_ORDERINGS)}, optionally followed by ' desc'")
        return "name", False
    return field, direction == ["desc"]


_SUMMARY_FIELDS = {"reading_count": "count", "first_reading_time": "first", "last_reading_time": "last"}


def meter_page(
    *, filters: MeterFilters, order_by: str = "", skip: int = 0, page_size: int = 0, page_token: str = "",
    caller: Caller = SERVICE,
) -> MeterPage:
    """A page of meters matching `filters`, each with its summary; the next page's token and how
    many meters match in all, of those `caller` may see. Meters without a summary (their store
    is down) sort last and match
    neither value of `has_readings`."""
    checks = _Checks()
    size = checks.page_size(page_size, "page_size", METERS_PAGE_SIZE)
    if skip < 0:
        checks.fail("skip", f"must not be negative (got {skip})")
    if len(filters.search) > SEARCH_MAX_LENGTH:
        checks.fail("search", f"is longer than {SEARCH_MAX_LENGTH} characters")
    field, descending = _ordering(order_by, checks)
    request_fields = (filters, order_by)
    offset = _redeemed(checks, "meters", page_token, "page_token", request_fields) or 0
    checks.raise_if_any()
    offset += skip
    meters = _filtered_meters(filters).filter(caller.meters_filter())
    if field == "name" and filters.has_readings is None:
        total = meters.count()
        names = meters.order_by("-name" if descending else "name")
        entries = [meter_entry(meter) for meter in names[offset : offset + size]]
    else:
        every = [meter_entry(meter) for meter in meters.order_by("-name" if descending and field == "name" else "name")]
        if filters.has_readings is not None:
            every = [e for e in every if e.summary is not None and (e.summary.count > 0) == filters.has_readings]
        if field != "name":
            # Sorts are stable, also reversed: ties stay in name order. Meters without a
            # summary, or without readings for first/last, come last.
            attribute = _SUMMARY_FIELDS[field]

            def figure(entry: MeterEntry):
                return getattr(entry.summary, attribute) if entry.summary is not None else None

            known = sorted((e for e in every if figure(e) is not None), key=figure, reverse=descending)
            every = known + [e for e in every if figure(e) is None]
        total = len(every)
        entries = every[offset : offset + size]
    end = offset + len(entries)
    next_token = tokens.issue("meters", position=end, request_fields=request_fields) if end < total else ""
    return MeterPage(entries, next_token, total)


def _filtered_meters(filters: MeterFilters):
    meters = Meter.objects.all()
    if filters.search:
        meters = meters.filter(Q(name__icontains=filters.search) | Q(description__icontains=filters.search))
    for field in ("source", "time_zone", "unit"):
        if getattr(filters, field):
            meters = meters.filter(**{field: getattr(filters, field)})
    return meters


# ---- Readings ------------------------------------------------------------------------------


def _redeemed(checks: _Checks, kind: str, token: str, field: str, request_fields: tuple):
    """The position a token continues after; None without one (or with a bad one, noted)."""
    if not token:
        return None
    try:
        return tokens.redeem(kind, token, field=field, request_fields=request_fields)
    except InvalidArgument as exc:
        checks.violations += exc.violations
        return None


def _continued_range(
    *, checks: _Checks, kind: str, meter_name: str, start, end, token: str, token_field: str, caller: Caller
) -> tuple[Meter, int, int, int | None, tuple]:
    """The meter, the checked range, the position a token continues after (None without one)
    and the request fields tokens of this request are bound to. Raises InvalidArgument naming
    every offending field (those already in `checks` too)."""
    checks.meter_name(meter_name)
    whole = checks.time_range(start, end)
    after, request_fields = None, ()
    if whole is not None:
        request_fields = (meter_name, *whole)
        after = _redeemed(checks, kind, token, token_field, request_fields)
    checks.raise_if_any()
    return _meter(meter_name, caller), *whole, after, request_fields


def reading_page(
    *, meter_name: str, start: int | None, end: int | None, page_size: int, page_token: str,
    caller: Caller = SERVICE,
) -> tuple[Series, str]:
    """A page of readings in [start, end), oldest first, and the next page's token ("" at the end)."""
    checks = _Checks()
    size = checks.page_size(page_size, "page_size", READINGS_PAGE_SIZE)
    meter, start, end, after, request_fields = _continued_range(
        checks=checks, kind="readings", meter_name=meter_name, start=start, end=end, token=page_token, token_field="page_token",
        caller=caller,
    )
    # One reading more than the page tells whether another page follows.
    series = source_of(meter).read(meter, start=start, end=end, after=after, limit=size + 1)
    if len(series) <= size:
        return series, ""
    page = Series(series.times[:size], series.values[:size])
    return page, tokens.issue("readings", position=int(page.times[-1]), request_fields=request_fields)


def reading_batches(
    *, meter_name: str, start: int | None, end: int | None, batch_size: int, resume_token: str,
    caller: Caller = SERVICE,
) -> Iterator[tuple[Series, str]]:
    """Batches of the readings in [start, end), each with the token that resumes after it.

    Arguments are checked here, before the first batch is read; the store is read one batch at a
    time, so a consumer that stops iterating stops the reads.
    """
    checks = _Checks()
    size = checks.page_size(batch_size, "batch_size", STREAM_BATCH_SIZE)
    meter, start, end, after, request_fields = _continued_range(
        checks=checks, kind="stream", meter_name=meter_name, start=start, end=end, token=resume_token, token_field="resume_token",
        caller=caller,
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


def _zone(checks: _Checks, name: str, *, of_meter: bool = False):
    try:
        return time_zone_named(name)
    except ValueError as exc:
        # A meter's own zone is checked when it is saved; one set around that is still named.
        checks.fail("time_zone", f"the meter's time zone {exc}; give time_zone" if of_meter else str(exc))
        return None


@dataclass(frozen=True)
class Aggregates:
    edges: np.ndarray
    expected: np.ndarray
    stats: BucketStats
    extremes: Extremes | None
    time_zone: str


def reading_aggregates(
    *, meter_name: str, start, end, window: Window | int | None, time_zone: str, caller: Caller = SERVICE,
) -> Aggregates:
    """Stats per window of [start, end), windows aligned in `time_zone` (default: the meter's)."""
    checks = _Checks()
    checks.meter_name(meter_name)
    whole = checks.time_range(start, end)
    if window is None:
        checks.fail("window", "is required: 15m, hour, day, week or month")
    elif not isinstance(window, Window):
        checks.fail("window", f"{window} is not a Window")
        window = None
    zone = _zone(checks, time_zone) if time_zone else None
    if whole is not None and window is not None and (whole[1] - whole[0]) // window.nominal_seconds > MAX_BUCKETS:
        checks.fail("end_time", f"the range holds more than {MAX_BUCKETS} windows; use a wider window")
    checks.raise_if_any()
    meter = _meter(meter_name, caller)
    start, end = whole
    if zone is None:
        zone = _zone(checks, meter.time_zone, of_meter=True)
        checks.raise_if_any()
    edges = window_edges(start=start, end=end, window=window, zone=zone)
    source = source_of(meter)
    stats = source.aggregate(meter, edges=edges, zone=zone.key)
    interval = int(meter.interval.total_seconds())
    return Aggregates(
        edges=edges,
        expected=slots_between(edges[:-1], edges[1:], interval),
        stats=stats,
        extremes=stats.extremes,
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


def reading_completeness(
    *, meter_name: str, start: int | None, end: int | None, caller: Caller = SERVICE,
) -> Completeness:
    """Expected and present slots of [start, end) at the meter's interval, and the gaps."""
    checks = _Checks()
    checks.meter_name(meter_name)
    whole = checks.time_range(start, end)
    checks.raise_if_any()
    meter = _meter(meter_name, caller)
    start, end = whole
    interval = int(meter.interval.total_seconds())
    first_slot, end_slot = slots_from(start, interval), slots_from(end, interval)
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
    gaps = [(max(a, start), min(b, end), slots_between(a, b, interval)) for a, b in runs[:GAPS_KEPT]]
    return Completeness(interval, expected, jumps.count, gaps, len(runs))
