"""Translations between protobuf messages and the plain values of readings.selectors."""
import numpy as np
from google.protobuf import duration_pb2, timestamp_pb2

from grpc_api.gen.meterusage.v1 import meter_usage_pb2 as pb
from readings.domain import Instant, Window

# The one mapping between the contract's Window enum and the domain's windows.
PROTO_WINDOWS = {
    Window.FIFTEEN_MINUTES: pb.WINDOW_15_MINUTES,
    Window.HOUR: pb.WINDOW_HOUR,
    Window.DAY: pb.WINDOW_DAY,
    Window.WEEK: pb.WINDOW_WEEK,
    Window.MONTH: pb.WINDOW_MONTH,
}
_WINDOWS_OF_PROTO = {value: window for window, value in PROTO_WINDOWS.items()}


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


def reading_time_text(reading) -> str:
    """A ReadingInput's time as the text a file would hold, so that it is cleaned by the file's
    rules: an instant as RFC 3339 (fractions kept, and refused as in files), or the text sent."""
    if reading.WhichOneof("when") == "time":
        try:
            return reading.time.ToJsonString()
        except ValueError:  # outside years 1 to 9999: named as sent
            return f"{reading.time.seconds}s{reading.time.nanos:+d}ns since 1970-01-01T00:00:00Z"
    return reading.local_time
