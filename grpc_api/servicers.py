"""The meterusage.v1 servicer: translate the request, call a selector, translate the result."""
from django_grpc_framework.services import Service

from grpc_api import convert, encode
from grpc_api.errors import grpc_errors
from grpc_api.permissions import caller_of
from grpc_api.gen.meterusage.v1 import meter_usage_pb2 as pb
from readings import selectors
from readings.domain import FieldViolation, InvalidArgument
from readings.writes import live


def _meter_range(request, context) -> dict:
    """The caller, the meter and [start, end) of a request, as the selectors take them."""
    return {
        "caller": caller_of(context),
        "meter_name": request.meter,
        "start": convert.instant_of(request, "start_time"),
        "end": convert.instant_of(request, "end_time"),
    }


class MeterUsageService(Service):
    @grpc_errors
    def ListMeters(self, request, context):
        filters = selectors.MeterFilters(
            search=request.search,
            source=request.source,
            time_zone=request.time_zone,
            unit=request.unit,
            has_readings=request.has_readings if request.HasField("has_readings") else None,
        )
        page = selectors.meter_page(
            filters=filters, order_by=request.order_by, skip=request.skip,
            page_size=request.page_size, page_token=request.page_token, caller=caller_of(context),
        )
        return pb.ListMetersResponse(
            meters=[convert.meter_message(entry) for entry in page.entries],
            next_page_token=page.next_page_token,
            total_size=page.total_size,
        )

    @grpc_errors
    def GetMeter(self, request, context):
        return convert.meter_message(selectors.meter_detail(name=request.name, caller=caller_of(context)))

    @grpc_errors
    def ListReadings(self, request, context):
        if request.view not in pb.ReadingsView.values():
            raise InvalidArgument(FieldViolation("view", f"{request.view} is not a ReadingsView"))
        series, next_token = selectors.reading_page(
            **_meter_range(request, context),
            page_size=request.page_size,
            page_token=request.page_token,
        )
        # Written column-wise to the bytes protobuf would write: no message object per reading.
        write = encode.readings_columns if request.view == pb.READINGS_VIEW_COLUMNS else encode.readings_rows
        return write(series.times, series.values, next_token)

    @grpc_errors
    def StreamReadings(self, request, context):
        batches = selectors.reading_batches(
            **_meter_range(request, context),
            batch_size=request.batch_size,
            resume_token=request.resume_token,
        )
        for series, token in batches:
            # A cancelled call or a passed deadline ends the stream before the next read.
            if not context.is_active():
                return
            yield encode.stream_message(series.times, series.values, token)

    @grpc_errors
    def AggregateReadings(self, request, context):
        result = selectors.reading_aggregates(
            **_meter_range(request, context),
            window=convert.window_of(request.window),
            time_zone=request.time_zone,
        )
        return convert.aggregates_response(result)

    @grpc_errors
    def GetCompleteness(self, request, context):
        result = selectors.reading_completeness(
            **_meter_range(request, context),
        )
        return pb.GetCompletenessResponse(
            interval=convert.duration(result.interval),
            expected_count=result.expected,
            present_count=result.present,
            missing_count=result.missing,
            coverage=result.present / result.expected if result.expected else 1.0,
            gaps=[
                pb.Gap(start_time=convert.timestamp(a), end_time=convert.timestamp(b), missing_count=n)
                for a, b, n in result.gaps
            ],
            gap_count=result.gap_count,
        )

    @grpc_errors
    def WriteReadings(self, request, context):
        caller = caller_of(context)
        unit, names = convert.row_naming(request)
        rows = live.rows_by_meter(
            [reading.meter for reading in request.readings],
            convert.reading_times(request.readings),
            [reading.value for reading in request.readings],
        )
        counts = live.readings_write(rows, unit=unit, names=names, caller=caller)
        return pb.WriteReadingsResponse(
            inserted_count=counts.inserted,
            updated_count=counts.updated,
            unchanged_count=counts.unchanged,
            skipped_count=counts.skipped,
            skipped=[
                pb.RejectedReading(index=problem.line, meter=meter, value=problem.value, reason=problem.reason)
                for meter, problem in counts.skipped_rows
            ],
        )
