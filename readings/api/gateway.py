"""Readings, aggregates and completeness from the meterusage.v1 gRPC service, as JSON-ready dicts.

Times in are UTC epoch seconds; times out are RFC 3339 UTC strings. A failed call raises
grpc_api.client.GatewayError.
"""
import zoneinfo
from datetime import datetime

from google.protobuf import timestamp_pb2

from grpc_api import client
from grpc_api.gen.meterusage.v1 import meter_usage_pb2 as pb
from readings.api.times import epoch_seconds, rfc3339, rfc3339_one
from readings.models import Meter
from readings.windows import Window

WINDOWS = {
    Window.FIFTEEN_MINUTES.value: pb.WINDOW_15_MINUTES,
    Window.HOUR.value: pb.WINDOW_HOUR,
    Window.DAY.value: pb.WINDOW_DAY,
    Window.WEEK.value: pb.WINDOW_WEEK,
    Window.MONTH.value: pb.WINDOW_MONTH,
}


def _timestamp(seconds: int) -> timestamp_pb2.Timestamp:
    return timestamp_pb2.Timestamp(seconds=seconds)


def time_range(*, meter: str, start: datetime, end: datetime, zone: zoneinfo.ZoneInfo | None) -> tuple[int, int]:
    """[start, end) in epoch seconds. Local times (naive) are read in `zone`, else in the meter's
    zone, else in UTC: an unknown meter is left for the service to report."""
    if zone is None and (start.tzinfo is None or end.tzinfo is None):
        name = Meter.objects.filter(name=meter).values_list("time_zone", flat=True).first()
        zone = zoneinfo.ZoneInfo(name or "UTC")
    return epoch_seconds(start, zone), epoch_seconds(end, zone)


def reading_page(*, meter: str, start: int, end: int, page_size: int, page_token: str) -> dict:
    """A page of readings in [start, end), oldest first, and the next page's token ("" on the last)."""
    response = client.call(
        "ListReadings",
        pb.ListReadingsRequest(
            meter=meter, start_time=_timestamp(start), end_time=_timestamp(end),
            page_size=page_size, page_token=page_token,
        ),
    )
    readings = response.readings
    reading_times = rfc3339([reading.time.seconds for reading in readings])
    return {
        "meter": meter,
        "start": rfc3339_one(start),
        "end": rfc3339_one(end),
        "readings": [{"time": t, "value": reading.value} for t, reading in zip(reading_times, readings)],
        "next_page_token": response.next_page_token,
    }


def _buckets(messages) -> list[dict]:
    starts = rfc3339([b.start_time.seconds for b in messages])
    ends = rfc3339([b.end_time.seconds for b in messages])
    return [
        {
            "start": start,
            "end": end,
            "count": b.count,
            "expected_count": b.expected_count,
            "coverage": b.coverage,
            "sum": b.sum,
            # Empty windows have no mean, min or max.
            "mean": b.mean if b.count else None,
            "min": b.min if b.count else None,
            "max": b.max if b.count else None,
        }
        for start, end, b in zip(starts, ends, messages)
    ]


def aggregates(*, meter: str, start: int, end: int, window: str, time_zone: str) -> dict:
    """Stats per window of [start, end), windows aligned in `time_zone` ("" for the meter's)."""
    response = client.call(
        "AggregateReadings",
        pb.AggregateReadingsRequest(
            meter=meter, start_time=_timestamp(start), end_time=_timestamp(end),
            window=WINDOWS[window], time_zone=time_zone,
        ),
    )
    return {
        "meter": meter,
        "start": rfc3339_one(start),
        "end": rfc3339_one(end),
        "window": window,
        "time_zone": response.time_zone,
        "buckets": _buckets(response.buckets),
        "total": _buckets([response.total])[0],
        "min_time": rfc3339_one(response.min_time.seconds) if response.HasField("min_time") else None,
        "max_time": rfc3339_one(response.max_time.seconds) if response.HasField("max_time") else None,
    }


def completeness(*, meter: str, start: int, end: int) -> dict:
    """Expected, present and missing slots of [start, end) and the runs of missing ones."""
    response = client.call(
        "GetCompleteness",
        pb.GetCompletenessRequest(meter=meter, start_time=_timestamp(start), end_time=_timestamp(end)),
    )
    gaps = response.gaps
    gap_starts = rfc3339([gap.start_time.seconds for gap in gaps])
    gap_ends = rfc3339([gap.end_time.seconds for gap in gaps])
    return {
        "meter": meter,
        "start": rfc3339_one(start),
        "end": rfc3339_one(end),
        "interval_seconds": response.interval.seconds,
        "expected_count": response.expected_count,
        "present_count": response.present_count,
        "missing_count": response.missing_count,
        "coverage": response.coverage,
        "gap_count": response.gap_count,
        "gaps": [
            {"start": a, "end": b, "missing_count": gap.missing_count}
            for a, b, gap in zip(gap_starts, gap_ends, gaps)
        ],
    }
