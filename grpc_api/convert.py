"""Translations between protobuf messages and the plain values of readings.selectors."""
import numpy as np
from google.protobuf import duration_pb2, timestamp_pb2

from grpc_api.gen.meterusage.v1 import meter_usage_pb2 as pb
from readings.windows import Window

WINDOWS = {
    pb.WINDOW_15_MINUTES: Window.FIFTEEN_MINUTES,
    pb.WINDOW_HOUR: Window.HOUR,
    pb.WINDOW_DAY: Window.DAY,
    pb.WINDOW_WEEK: Window.WEEK,
    pb.WINDOW_MONTH: Window.MONTH,
}


def epoch_of(message, field: str) -> int | None:
    """Whole seconds of a Timestamp field, None when it is unset."""
    return getattr(message, field).seconds if message.HasField(field) else None


def timestamp(epoch: int) -> timestamp_pb2.Timestamp:
    return timestamp_pb2.Timestamp(seconds=int(epoch))


def duration(seconds: int) -> duration_pb2.Duration:
    return duration_pb2.Duration(seconds=int(seconds))


def window_of(value: int) -> Window | None:
    from readings.errors import FieldViolation, InvalidArgument

    if value == pb.WINDOW_UNSPECIFIED:
        return None
    if value not in WINDOWS:
        raise InvalidArgument(FieldViolation("window", f"{value} is not a Window"))
    return WINDOWS[value]


def bucket(start: int, end: int, count: int, expected: int, total: float, low: float, high: float) -> pb.Bucket:
    message = pb.Bucket(
        start_time=timestamp(start),
        end_time=timestamp(end),
        count=count,
        expected_count=expected,
        coverage=count / expected if expected else 0.0,
        sum=total,
    )
    if count:
        message.mean = total / count
        message.min = low
        message.max = high
    return message


def aggregates_response(result) -> pb.AggregateReadingsResponse:
    edges, stats = result.edges, result.stats
    starts, ends = edges[:-1].tolist(), edges[1:].tolist()
    rows = zip(
        starts, ends, stats.counts.tolist(), result.expected.tolist(),
        stats.sums.tolist(), stats.mins.tolist(), stats.maxs.tolist(),
    )
    count = int(stats.counts.sum())
    filled = stats.counts > 0
    response = pb.AggregateReadingsResponse(
        buckets=[bucket(*row) for row in rows],
        total=bucket(
            int(edges[0]), int(edges[-1]), count, int(result.expected.sum()), float(stats.sums.sum()),
            float(np.min(stats.mins[filled])) if count else 0.0,
            float(np.max(stats.maxs[filled])) if count else 0.0,
        ),
        time_zone=result.time_zone,
    )
    if result.extremes:
        response.min_time.CopyFrom(timestamp(result.extremes.min_time))
        response.max_time.CopyFrom(timestamp(result.extremes.max_time))
    return response
