"""Translations between protobuf messages and the plain values of readings (selectors, writes)."""
from datetime import datetime, timedelta

import numpy as np
from google.protobuf import duration_pb2, timestamp_pb2
from google.type import datetime_pb2

from grpc_api.gen.meterusage.v1 import meter_usage_pb2 as pb
from readings.domain import Instant, Window
from readings.writes.rows import TypedTimes, parse_time_text

# The one mapping between the contract's Window enum and the domain's windows.
PROTO_WINDOWS = {
    Window.FIFTEEN_MINUTES: pb.WINDOW_15_MINUTES,
    Window.HOUR: pb.WINDOW_HOUR,
    Window.DAY: pb.WINDOW_DAY,
    Window.WEEK: pb.WINDOW_WEEK,
    Window.MONTH: pb.WINDOW_MONTH,
}
_WINDOWS_OF_PROTO = {value: window for window, value in PROTO_WINDOWS.items()}
_EPOCH = datetime(1970, 1, 1)


def instant(stamp: timestamp_pb2.Timestamp) -> Instant:
    """A Timestamp as it came (seconds and nanos, checked by the selectors)."""
    return Instant(stamp.seconds, stamp.nanos)


def instant_of(message, field: str) -> Instant | None:
    """A Timestamp field of `message` as an Instant; None when unset."""
    return instant(getattr(message, field)) if message.HasField(field) else None


def timestamp(moment: Instant | int | float) -> timestamp_pb2.Timestamp:
    """The one way to a Timestamp: from an Instant, whole epoch seconds, or epoch seconds with a
    fraction (commit times, kept to the microsecond)."""
    if isinstance(moment, Instant):
        return timestamp_pb2.Timestamp(seconds=moment.seconds, nanos=moment.nanos)
    if isinstance(moment, float):
        seconds, nanos = divmod(round(moment * 1_000_000), 1_000_000)
        return timestamp_pb2.Timestamp(seconds=seconds, nanos=nanos * 1000)
    return timestamp_pb2.Timestamp(seconds=int(moment))


def duration(seconds: int) -> duration_pb2.Duration:
    return duration_pb2.Duration(seconds=int(seconds))


def window_of(value: int) -> Window | int | None:
    """The domain's window for a Window enum value; None when unspecified, and the number itself
    when it names no window (the selectors report it with the request's other faults)."""
    if value == pb.WINDOW_UNSPECIFIED:
        return None
    return _WINDOWS_OF_PROTO.get(value, value)


def meter_message(entry) -> pb.Meter:
    """A Meter message of a selectors.MeterEntry."""
    meter, summary = entry.meter, entry.summary
    message = pb.Meter(
        name=meter.name,
        description=meter.description,
        unit=meter.unit,
        time_zone=meter.time_zone,
        interval=duration(meter.interval.total_seconds()),
        source=meter.source,
        readings_unavailable=entry.unavailable,
    )
    if summary is not None:
        message.reading_count = summary.count
        if summary.first is not None:
            message.first_reading_time.CopyFrom(timestamp(summary.first))
            message.last_reading_time.CopyFrom(timestamp(summary.last))
    return message


def fill_bucket(message: pb.Bucket, start: int, end: int, count: int, expected: int, total: float, low: float, high: float) -> None:
    """Set the fields of a Bucket in place (cheaper than building one and copying it)."""
    message.start_time.seconds = start
    message.end_time.seconds = end
    message.count = count
    message.expected_count = expected
    message.coverage = count / expected if expected else 0.0
    message.sum = total
    if count:
        message.mean = total / count
        message.min = low
        message.max = high


def aggregates_response(result) -> pb.AggregateReadingsResponse:
    edges, stats = result.edges, result.stats
    starts, ends = edges[:-1].tolist(), edges[1:].tolist()
    rows = zip(
        starts, ends, stats.counts.tolist(), result.expected.tolist(),
        stats.sums.tolist(), stats.mins.tolist(), stats.maxs.tolist(),
    )
    count = int(stats.counts.sum())
    filled = stats.counts > 0
    response = pb.AggregateReadingsResponse(time_zone=result.time_zone)
    for row in rows:
        fill_bucket(response.buckets.add(), *row)
    fill_bucket(
        response.total, int(edges[0]), int(edges[-1]), count, int(result.expected.sum()), float(stats.sums.sum()),
        float(np.min(stats.mins[filled])) if count else 0.0,
        float(np.max(stats.maxs[filled])) if count else 0.0,
    )
    if result.extremes:
        response.min_time.seconds = result.extremes.min_time
        response.max_time.seconds = result.extremes.max_time
    return response


def reading_times(readings) -> TypedTimes:
    """The times of WriteReadings' readings, in types: instants as epoch seconds, wall times as
    wall-clock seconds (read in each meter's zone later), local_time text by the rules of files.
    A time that cannot be one is refused here with the reason a file's row would get."""
    count = len(readings)
    seconds = np.zeros(count, dtype=np.int64)
    instant = np.zeros(count, dtype=bool)
    texts, refused = [""] * count, {}
    for row, reading in enumerate(readings):
        kind = reading.WhichOneof("when")
        if kind == "time":
            seconds[row], instant[row], texts[row] = reading.time.seconds, True, _instant_text(reading.time)
            if reading.time.nanos:
                refused[row] = f"time {texts[row]!r} has fractional seconds; whole seconds are expected"
        elif kind == "wall_time":
            texts[row] = _wall_text(reading.wall_time)
            parsed, is_instant, reason = _wall_seconds(reading.wall_time, texts[row])
            if reason:
                refused[row] = reason
            else:
                seconds[row], instant[row] = parsed, is_instant
        elif kind == "local_time":
            texts[row] = reading.local_time
            parsed, is_instant, reason = parse_time_text(reading.local_time)
            if parsed is None:
                refused[row] = reason
            else:
                seconds[row], instant[row] = parsed, is_instant
        else:
            refused[row] = "time is empty"
    return TypedTimes(seconds, instant, texts, refused)


def _instant_text(stamp: timestamp_pb2.Timestamp) -> str:
    """How an instant is quoted in reasons: RFC 3339, or its count of seconds where it has none."""
    try:
        return stamp.ToJsonString()
    except ValueError:  # outside years 1 to 9999
        return f"{stamp.seconds}s{stamp.nanos:+d}ns since 1970-01-01T00:00:00Z"


def _wall_text(wall: datetime_pb2.DateTime) -> str:
    return f"{wall.year:04d}-{wall.month:02d}-{wall.day:02d} {wall.hours:02d}:{wall.minutes:02d}:{wall.seconds:02d}"


def _wall_seconds(wall: datetime_pb2.DateTime, text: str) -> tuple[int, bool, str]:
    """(wall-clock seconds, or UTC seconds with a utc_offset; whether an instant; the reason it is none)."""
    if wall.HasField("time_zone"):
        return 0, False, f"time {text!r} names a time zone; send it without (the meter's zone) or as an instant"
    try:
        moment = datetime(wall.year, wall.month, wall.day, wall.hours, wall.minutes, wall.seconds)
    except ValueError:
        return 0, False, f"time {text!r} is not a date and time that exists"
    if wall.nanos:
        return 0, False, f"time {text!r} has fractional seconds; whole seconds are expected"
    naive = (moment - _EPOCH) // timedelta(seconds=1)
    if wall.HasField("utc_offset"):
        return naive - wall.utc_offset.seconds, True, ""
    return naive, False, ""
