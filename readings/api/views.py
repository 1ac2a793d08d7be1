"""Views of the HTTP API under /api/v1/: meters and import runs from the relational store; readings,
aggregates and completeness from the gRPC service (readings.api.gateway)."""
import hashlib
import time

from django.http import HttpResponseNotModified
from django.utils.cache import parse_etags
from drf_spectacular.utils import extend_schema, extend_schema_view
from rest_framework import permissions, viewsets
from rest_framework.renderers import BrowsableAPIRenderer
from rest_framework.response import Response
from rest_framework.utils.urls import replace_query_param
from rest_framework.views import APIView

from readings.api import gateway, schema
from readings.api.filters import ImportRunFilter, MeterFilter
from readings.api.renderers import CSVRenderer, FastJSONRenderer
from readings.api.serializers import (
    AggregatesDocument,
    AggregatesQuery,
    CompletenessDocument,
    ImportRunDetailSerializer,
    ImportRunSerializer,
    MeterSerializer,
    RangeQuery,
    ReadingsDocument,
    ReadingsQuery,
)
from readings.models import ImportRun, Meter

# Headers a 304 repeats from the 200 it stands for (RFC 9110, 15.4.5).
NOT_MODIFIED_HEADERS = ("ETag", "Cache-Control", "Vary", "Link")


@extend_schema_view(
    list=extend_schema(summary="List meters", responses=schema.with_problems(MeterSerializer(many=True), 400, 401, 403, 404, 406)),
    retrieve=extend_schema(
        summary="One meter", parameters=[schema.METER_PARAMETER],
        responses=schema.with_problems(MeterSerializer, 401, 403, 404, 406),
    ),
)
class MeterViewSet(viewsets.ReadOnlyModelViewSet):
    """Meters, with the reading count and first/last reading the last import recorded."""

    queryset = Meter.objects.order_by("name")
    serializer_class = MeterSerializer
    filterset_class = MeterFilter
    ordering_fields = ["name", "reading_count", "first_reading_at", "last_reading_at"]
    lookup_field = "name"
    lookup_url_kwarg = "meter"
    lookup_value_regex = r"[-a-zA-Z0-9_]+"


@extend_schema_view(
    list=extend_schema(summary="List import runs (staff only)", responses=schema.with_problems(ImportRunSerializer(many=True), 400, 401, 403, 404, 406)),
    retrieve=extend_schema(summary="One import run with its rejected rows (staff only)", responses=schema.with_problems(ImportRunDetailSerializer, 401, 403, 404, 406)),
)
class ImportRunViewSet(viewsets.ReadOnlyModelViewSet):
    """Imports into the stores, newest first, with their counts."""

    queryset = ImportRun.objects.select_related("meter").order_by("-started_at", "-id")
    permission_classes = [permissions.IsAdminUser]
    filterset_class = ImportRunFilter
    ordering_fields = ["started_at", "finished_at", "rows_read"]

    def get_serializer_class(self):
        return ImportRunDetailSerializer if self.action == "retrieve" else ImportRunSerializer


class GatewayView(APIView):
    """A GET answered from the gRPC service: query parameters checked by `query_class`, the
    document built by `fetch`, as JSON, the browsable API or CSV (`?format=csv`)."""

    renderer_classes = [FastJSONRenderer, BrowsableAPIRenderer, CSVRenderer]
    query_class = RangeQuery
    csv_name = ""
    # End of the requested range (epoch seconds), for the caching decision.
    range_end: int | None = None

    def get_renderers(self):
        renderers = super().get_renderers()
        if self.request.method not in ("GET", "HEAD"):
            # CSV holds data documents only, not OPTIONS metadata.
            renderers = [r for r in renderers if not isinstance(r, CSVRenderer)]
        return renderers

    def get(self, request, meter):
        query = self.query_class(data=request.query_params)
        query.is_valid(raise_exception=True)
        params = dict(query.validated_data)
        start, end = gateway.time_range(meter=meter, start=params.pop("start"), end=params.pop("end"), zone=params.get("tz"))
        self.range_end = end
        document = self.fetch(meter=meter, start=start, end=end, **params)
        return Response(document)

    def fetch(self, *, meter: str, start: int, end: int, **params) -> dict:
        raise NotImplementedError

    def csv_table(self, document: dict):
        raise NotImplementedError

    def finalize_response(self, request, response, *args, **kwargs):
        response = super().finalize_response(request, response, *args, **kwargs)
        if response.status_code != 200 or not isinstance(response, Response):
            return response
        if request.accepted_renderer.format == "csv":
            meter = self.kwargs["meter"]
            response["Content-Disposition"] = f'attachment; filename="{meter}-{self.csv_name}.csv"'
        # A range that has ended will not change unless readings are imported again: let clients
        # revalidate by ETag instead of downloading it again.
        if self.range_end is not None and self.range_end <= time.time():
            return self.conditional(request, response)
        return response

    def conditional(self, request, response):
        response.render()
        response["ETag"] = f'"{hashlib.blake2b(response.content, digest_size=16).hexdigest()}"'
        response["Cache-Control"] = "no-cache"
        # If-None-Match compares weakly: W/"x" matches "x".
        presented = {tag.removeprefix("W/") for tag in parse_etags(request.headers.get("If-None-Match", ""))}
        if response["ETag"] in presented or "*" in presented:
            not_modified = HttpResponseNotModified()
            for name in NOT_MODIFIED_HEADERS:
                if name in response:
                    not_modified[name] = response[name]
            return not_modified
        return response


@extend_schema(
    summary="Readings of a meter in a range, paged",
    parameters=[ReadingsQuery, *schema.COMMON_PARAMETERS],
    responses=schema.gateway_responses(ReadingsDocument),
)
class ReadingsView(GatewayView):
    """Readings of a meter in [start, end), oldest first, from the gRPC service (ListReadings).

    A page holds `page_size` readings; `next` (and the `Link: rel="next"` header) is the URL of
    the next page. A range that has ended carries an ETag; If-None-Match gets a 304.
    """

    query_class = ReadingsQuery
    csv_name = "readings"

    def fetch(self, *, meter, start, end, page_size, page_token, **params):
        document = gateway.reading_page(meter=meter, start=start, end=end, page_size=page_size, page_token=page_token)
        token = document.pop("next_page_token")
        next_url = None
        if token:
            next_url = replace_query_param(self.request.build_absolute_uri(), "page_token", token)
            self.headers["Link"] = f'<{next_url}>; rel="next"'
        return {**document, "next": next_url, "next_page_token": token}

    def csv_table(self, document):
        yield ["time", "value"]
        for reading in document["readings"]:
            yield [reading["time"], reading["value"]]


@extend_schema(
    summary="Readings of a meter summed up per window",
    parameters=[AggregatesQuery, *schema.COMMON_PARAMETERS],
    responses=schema.gateway_responses(AggregatesDocument),
)
class AggregatesView(GatewayView):
    """Count, sum, mean, min, max and coverage per window (15m, hour, day, week, month) of
    [start, end), from the gRPC service (AggregateReadings). Days, weeks and months follow the
    wall clock of `tz` (a day with a clock change lasts 23 or 25 hours); empty windows are kept.
    CSV holds the windows. A range that has ended carries an ETag; If-None-Match gets a 304.
    """

    query_class = AggregatesQuery
    csv_name = "aggregates"

    def fetch(self, *, meter, start, end, window, tz=None, **params):
        return gateway.aggregates(meter=meter, start=start, end=end, window=window, time_zone=tz.key if tz else "")

    def csv_table(self, document):
        columns = ["start", "end", "count", "expected_count", "coverage", "sum", "mean", "min", "max"]
        yield columns
        for bucket in document["buckets"]:
            yield [bucket[column] for column in columns]


@extend_schema(
    summary="Completeness of a meter's readings in a range, and the gaps",
    parameters=[RangeQuery, *schema.COMMON_PARAMETERS],
    responses=schema.gateway_responses(CompletenessDocument),
)
class CompletenessView(GatewayView):
    """Expected, present and missing readings at the meter's interval in [start, end), and the
    runs of missing ones, from the gRPC service (GetCompleteness). CSV holds the gaps. A range
    that has ended carries an ETag; If-None-Match gets a 304."""

    csv_name = "gaps"

    def fetch(self, *, meter, start, end, **params):
        return gateway.completeness(meter=meter, start=start, end=end)

    def csv_table(self, document):
        yield ["start", "end", "missing_count"]
        for gap in document["gaps"]:
            yield [gap["start"], gap["end"], gap["missing_count"]]
