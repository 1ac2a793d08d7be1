"""The HTTP API's documents, fetched from the meterusage.v1 gRPC service: meters, readings,
aggregates, completeness and changes as JSON-ready dicts, built to their declarations in
`gateway.api.serializers`.

Times in are instants; times out are RFC 3339 UTC strings. A failed call raises
gateway.client.RpcFailed.
"""
from collections.abc import Callable

import numpy as np

from gateway import client
from gateway.api.times import rfc3339, rfc3339_instant, rfc3339_one
from gateway.api.serializers import (
    METER_ORDERINGS,
    AggregatesDocument,
    BucketDocument,
    ChangeDocument,
    ChangesDocument,
    CompletenessDocument,
    GapDocument,
    MeterDocument,
    MeterLinksDocument,
    ReadingDocument,
    ReadingsDocument,
)
from grpc_api.convert import PROTO_WINDOWS, instant, timestamp
from grpc_api.gen.meterusage.v1 import meter_usage_pb2 as pb
from readings.domain import CHANGES_PER_ANSWER, Instant, Window


# ListMetersRequest.skip is an int32.
MAX_SKIP = 2**31 - 1


def meter_document(message: pb.Meter, link: Callable[..., str]) -> dict:
    """A meter as the API shows it; `link(view, meter, **query)` makes the URLs of its views
    (links to its readings, aggregates and completeness cover all its data)."""
    has_readings = message.HasField("first_reading_time")
    data_range = {}
    if has_readings:
        last = message.last_reading_time.seconds + message.interval.seconds
        data_range = {"start": rfc3339_one(message.first_reading_time.seconds), "end": rfc3339_one(last)}
    return MeterDocument.build(
        url=link("detail", message.name),
        name=message.name,
        description=message.description,
        unit=message.unit,
        time_zone=message.time_zone,
        interval_seconds=message.interval.seconds,
        source=message.source,
        reading_count=message.reading_count if message.HasField("reading_count") else None,
        first_reading_time=data_range.get("start"),
        last_reading_time=rfc3339_one(message.last_reading_time.seconds) if has_readings else None,
        readings_unavailable=message.readings_unavailable or None,
        links=MeterLinksDocument.build(
            readings=link("readings", message.name, **data_range),
            aggregates=link("aggregates", message.name, **data_range, **({"window": "day"} if has_readings else {})),
            completeness=link("completeness", message.name, **data_range),
        ),
    )


def meter(*, name: str, link: Callable[..., str]) -> dict:
    return meter_document(client.call("GetMeter", pb.GetMeterRequest(name=name)), link)


def meter_page(
    *, filters: dict, ordering: str, skip: int, page_size: int, link: Callable[..., str]
) -> tuple[list[dict], int]:
    """A page of meters matching `filters` (search, source, time_zone, unit, has_readings) in
    `ordering` (a name of METER_ORDERINGS, "-" first for descending), and how many match."""
    field = METER_ORDERINGS[ordering.removeprefix("-")]
    order_by = f"{field} desc" if ordering.startswith("-") else field
    response = client.call(
        "ListMeters",
        pb.ListMetersRequest(**filters, order_by=order_by, skip=skip, page_size=page_size),
    )
    return [meter_document(message, link) for message in response.meters], response.total_size


def reading_page(
    *, meter: str, start: Instant, end: Instant, page_size: int, page_token: str, next_url: Callable[[str], str]
) -> dict:
    """A page of readings in [start, end), oldest first; `next_url(token)` is the URL of the next
    page (none on the last)."""
    response = client.call(
        "ListReadings",
        pb.ListReadingsRequest(
            meter=meter, start_time=timestamp(start), end_time=timestamp(end),
            page_size=page_size, page_token=page_token, view=pb.READINGS_VIEW_COLUMNS,
        ),
    )
    token = response.next_page_token
    return ReadingsDocument.build(
        meter=meter,
        start=rfc3339_instant(start),
        end=rfc3339_instant(end),
        readings=ReadingDocument.rows(time=rfc3339(np.array(response.times, dtype=np.int64)), value=response.values),
        next=next_url(token) if token else None,
        next_page_token=token,
    )


def _buckets(messages) -> list[dict]:
    # Empty windows have no mean, min or max.
    return BucketDocument.rows(
        start=rfc3339([b.start_time.seconds for b in messages]),
        end=rfc3339([b.end_time.seconds for b in messages]),
        count=[b.count for b in messages],
        expected_count=[b.expected_count for b in messages],
        coverage=[b.coverage for b in messages],
        sum=[b.sum for b in messages],
        mean=[b.mean if b.count else None for b in messages],
        min=[b.min if b.count else None for b in messages],
        max=[b.max if b.count else None for b in messages],
    )


def aggregates(*, meter: str, start: Instant, end: Instant, window: str, time_zone: str) -> dict:
    """Stats per window of [start, end), windows aligned in `time_zone` ("" for the meter's)."""
    response = client.call(
        "AggregateReadings",
        pb.AggregateReadingsRequest(
            meter=meter, start_time=timestamp(start), end_time=timestamp(end),
            window=PROTO_WINDOWS[Window(window)], time_zone=time_zone,
        ),
    )
    return AggregatesDocument.build(
        meter=meter,
        start=rfc3339_instant(start),
        end=rfc3339_instant(end),
        window=window,
        time_zone=response.time_zone,
        buckets=_buckets(response.buckets),
        total=_buckets([response.total])[0],
        min_time=rfc3339_one(response.min_time.seconds) if response.HasField("min_time") else None,
        max_time=rfc3339_one(response.max_time.seconds) if response.HasField("max_time") else None,
    )


def completeness(*, meter: str, start: Instant, end: Instant) -> dict:
    """Expected, present and missing slots of [start, end) and the runs of missing ones."""
    response = client.call(
        "GetCompleteness",
        pb.GetCompletenessRequest(meter=meter, start_time=timestamp(start), end_time=timestamp(end)),
    )
    gaps = response.gaps
    return CompletenessDocument.build(
        meter=meter,
        start=rfc3339_instant(start),
        end=rfc3339_instant(end),
        interval_seconds=response.interval.seconds,
        expected_count=response.expected_count,
        present_count=response.present_count,
        missing_count=response.missing_count,
        coverage=response.coverage,
        gap_count=response.gap_count,
        gaps=GapDocument.rows(
            start=rfc3339([gap.start_time.seconds for gap in gaps]),
            end=rfc3339([gap.end_time.seconds for gap in gaps]),
            missing_count=[gap.missing_count for gap in gaps],
        ),
    )


def changes(*, meter: str, after: str) -> dict:
    """Changes of `meter`'s readings committed after the token `after` ("": none, from now on),
    oldest first, at most CHANGES_PER_ANSWER (or one message of the service, if that holds more); `next`
    continues after the last one, `more` says whether others are already waiting.

    The service's catch-up-only watch sends everything waiting, in messages of up to a few
    thousand changes, each with a token to resume after it: reading stops before the message that
    would pass the cap, and its token is not used.
    """
    request = pb.WatchReadingsRequest(meters=[meter], resume_token=after, catch_up_only=True)
    found, token, more = [], after, False
    for message in client.stream("WatchReadings", request):
        if found and len(found) + len(message.changes) > CHANGES_PER_ANSWER:
            more = True
            break
        found.extend(message.changes)
        token = message.resume_token
        if message.caught_up:
            break
    return ChangesDocument.build(
        meter=meter,
        changes=ChangeDocument.rows(
            time=rfc3339([change.time.seconds for change in found]),
            value=[change.value for change in found],
            replaced=[change.replaced for change in found],
            commit_time=[rfc3339_instant(instant(change.commit_time)) for change in found],
        ),
        next=token,
        more=more,
    )
