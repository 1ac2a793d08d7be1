"""Translations between protobuf messages and the plain values of readings (selectors, writes)."""
from datetime import datetime, timedelta

import numpy as np
from google.protobuf import duration_pb2, timestamp_pb2
from google.type import datetime_pb2

from grpc_api.gen.meterusage.v1 import meter_usage_pb2 as pb
from readings.domain import FieldViolation, Instant, InvalidArgument, Window
from readings.writes.live import RowsInvalid
from readings.writes.rows import WALL_EPOCH, Code, TimeRead, TypedTimes, parse_time_text

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


# How a client may name its rows in reasons (WriteReadingsRequest.row_unit), beside "reading".
ROW_UNITS = ("line", "row")


def row_naming(request: pb.WriteReadingsRequest) -> tuple[str, np.ndarray | None]:
    """How reasons name the request's readings: by index ("reading 3"), or by the client's own
    row numbers in its unit ("line 12")."""
    if not request.row_unit:
        return "reading", None
    if request.row_unit not in ROW_UNITS:
        raise InvalidArgument(FieldViolation("row_unit", f"must be empty or one of {', '.join(ROW_UNITS)}"))
    return request.row_unit, np.array([reading.row_number for reading in request.readings], dtype=np.int64)


def refused_readings(error: RowsInvalid, limit: int) -> pb.RefusedReadings:
    """The readings a write was refused for, in types: the first `limit`, and how many in all."""
    return pb.RefusedReadings(
        readings=[
            pb.RefusedReading(
                index=problem.line, meter=meter, field=problem.code.field if problem.code else "",
                reason=problem.code or "", description=problem.reason,
            )
            for meter, problem in error.problems[:limit]
        ],
        refused_count=error.count,
    )


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
                refused[row] = (Code.TIME_FRACTIONAL, f"time {texts[row]!r} has fractional seconds; whole seconds are expected")
            continue
        if kind == "wall_time":
            texts[row] = _wall_text(reading.wall_time)
            read = _wall_seconds(reading.wall_time, texts[row])
        elif kind == "local_time":
            texts[row] = reading.local_time
            read = parse_time_text(reading.local_time)
        else:
            read = TimeRead(None, code=Code.TIME_EMPTY, reason="time is empty")
        if read.seconds is None:
            refused[row] = (read.code, read.reason)
        else:
            seconds[row], instant[row] = read.seconds, read.instant
    return TypedTimes(seconds, instant, texts, refused)


def _instant_text(stamp: timestamp_pb2.Timestamp) -> str:
    """How an instant is quoted in reasons: RFC 3339, or its count of seconds where it has none."""
    try:
        return stamp.ToJsonString()
    except ValueError:  # outside years 1 to 9999
        return f"{stamp.seconds}s{stamp.nanos:+d}ns since 1970-01-01T00:00:00Z"


def _wall_text(wall: datetime_pb2.DateTime) -> str:
    return f"{wall.year:04d}-{wall.month:02d}-{wall.day:02d} {wall.hours:02d}:{wall.minutes:02d}:{wall.seconds:02d}"


def _wall_seconds(wall: datetime_pb2.DateTime, text: str) -> TimeRead:
    """Wall-clock seconds of a civil time (UTC seconds, an instant, when it has a utc_offset)."""
    if wall.HasField("time_zone"):
        reason = f"time {text!r} names a time zone; send it without (the meter's zone) or as an instant"
        return TimeRead(None, code=Code.TIME_WITH_ZONE, reason=reason)
    try:
        moment = datetime(wall.year, wall.month, wall.day, wall.hours, wall.minutes, wall.seconds)
    except ValueError:
        return TimeRead(None, code=Code.TIME_NOT_A_TIME, reason=f"time {text!r} is not a date and time that exists")
    if wall.nanos:
        return TimeRead(None, code=Code.TIME_FRACTIONAL, reason=f"time {text!r} has fractional seconds; whole seconds are expected")
    naive = (moment - WALL_EPOCH) // timedelta(seconds=1)
    if wall.HasField("utc_offset"):
        return TimeRead(naive - wall.utc_offset.seconds, True)
    return TimeRead(naive)
