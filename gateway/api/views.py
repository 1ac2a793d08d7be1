"""Views of the HTTP API under /api/v1/. Everything derived from readings (meters' figures,
readings, aggregates, completeness) comes from the gRPC service (gateway.api.documents); import
runs, the record of every write, and rejected live messages from the relational store."""
import hashlib
import time
from urllib.parse import urlencode

from django.http import HttpResponseNotModified
from django.urls import reverse
from django.utils.cache import parse_etags
from drf_spectacular.utils import extend_schema, extend_schema_view
from rest_framework import permissions, viewsets
from rest_framework.exceptions import NotFound
from rest_framework.renderers import BrowsableAPIRenderer
from rest_framework.response import Response
from rest_framework.utils.urls import remove_query_param, replace_query_param
from rest_framework.views import APIView

from accounts.authentication import KeyLimits
from gateway.api import documents, uploads
from gateway.api.callers import CallsAsCaller, caller_of
from gateway.api import schema as openapi
from gateway.api.answers import answer_key, cached_answer, keep_answer
from gateway.api.filters import ImportRunFilter, RejectedMessageFilter
from gateway.api.parsers import LimitedJSONParser, ReadingsCSVParser, csv_body
from gateway.api.renderers import CSVRenderer, FastJSONRenderer
from gateway.api.schema import PageDocumentSchema
from gateway.api.serializers import (
    AggregatesDocument,
    AggregatesQuery,
    ChangesDocument,
    ChangesQuery,
    CompletenessDocument,
    ImportRunDetailSerializer,
    ImportRunSerializer,
    MeterDocument,
    MeterListDocument,
    MeterListQuery,
    RangeQuery,
    ReadingsDocument,
    ReadingsQuery,
    RejectedMessageSerializer,
    WriteResultDocument,
    readings_of_json,
)
from gateway.api.times import resolve_range
from readings.domain import METER_NAME_PATTERN, Instant
from readings.models import ImportRun, RejectedMessage

# Headers a 304 repeats from the 200 it stands for (RFC 9110, 15.4.5).
NOT_MODIFIED_HEADERS = ("ETag", "Cache-Control", "Vary", "Link")
METER_FILTERS = ("search", "source", "time_zone", "unit", "has_readings")


class MeterViewSet(CallsAsCaller, viewsets.ViewSet):
    """Meters: who they are (name, unit, zone, interval, source) and, from the store that serves
    each one, how many readings it has and its first and last reading."""

    schema = PageDocumentSchema()
    lookup_field = "name"
    lookup_url_kwarg = "meter"
    lookup_value_regex = METER_NAME_PATTERN

    @extend_schema(
        summary="List meters", parameters=[MeterListQuery], operation_id="v1_meters_list",
        responses=openapi.with_problems(MeterListDocument, 400, 401, 403, 404, 406, 502, 503, 504),
    )
    def list(self, request):
        query = MeterListQuery(data=request.query_params)
        query.is_valid(raise_exception=True)
        params = query.validated_data
        page, size = params["page"], params["page_size"]
        skip = (page - 1) * size
        if skip > documents.MAX_SKIP:  # past the end of any list the service can page through
            raise NotFound("Invalid page.")
        meters, total = documents.meter_page(
            filters={name: params[name] for name in METER_FILTERS if name in params},
            ordering=params["ordering"], skip=skip, page_size=size, link=self._link,
        )
        if page > 1 and not meters:
            raise NotFound("Invalid page.")
        url = request.build_absolute_uri()
        return Response({
            "count": total,
            "next": replace_query_param(url, "page", page + 1) if page * size < total else None,
            "previous": None if page == 1 else (
                remove_query_param(url, "page") if page == 2 else replace_query_param(url, "page", page - 1)
            ),
            "results": meters,
        })

    @extend_schema(
        summary="One meter", parameters=[openapi.METER_PARAMETER],
        responses=openapi.with_problems(MeterDocument, 401, 403, 404, 406, 502, 503, 504),
    )
    def retrieve(self, request, meter):
        return Response(documents.meter(name=meter, link=self._link))

    def _link(self, view: str, meter: str, **query) -> str:
        url = reverse(f"api:meter-{view}", kwargs={"meter": meter})
        return self.request.build_absolute_uri(url + (f"?{urlencode(query)}" if query else ""))


@extend_schema_view(
    list=extend_schema(summary="List import runs (staff only)", responses=openapi.with_problems(ImportRunSerializer(many=True), 400, 401, 403, 404, 406)),
    retrieve=extend_schema(summary="One import run with its rejected rows (staff only)", responses=openapi.with_problems(ImportRunDetailSerializer, 401, 403, 404, 406)),
)
class ImportRunViewSet(viewsets.ReadOnlyModelViewSet):
    """Imports into the stores, newest first, with their counts."""

    queryset = ImportRun.objects.select_related("meter").order_by("-started_at", "-id")
    permission_classes = [permissions.IsAdminUser, KeyLimits]
    filterset_class = ImportRunFilter
    ordering_fields = ["started_at", "finished_at", "rows_read"]

    def get_serializer_class(self):
        return ImportRunDetailSerializer if self.action == "retrieve" else ImportRunSerializer


@extend_schema_view(
    list=extend_schema(summary="List rejected live messages (staff only)", responses=openapi.with_problems(RejectedMessageSerializer(many=True), 400, 401, 403, 404, 406)),
    retrieve=extend_schema(summary="One rejected live message (staff only)", responses=openapi.with_problems(RejectedMessageSerializer, 401, 403, 404, 406)),
)
class RejectedMessageViewSet(viewsets.ReadOnlyModelViewSet):
    """Live messages that could not be used (not JSON, unknown meter, a bad time or value),
    newest first, with their reasons: the import runs of live readings."""

    queryset = RejectedMessage.objects.order_by("-received_at", "-id")
    serializer_class = RejectedMessageSerializer
    permission_classes = [permissions.IsAdminUser, KeyLimits]
    filterset_class = RejectedMessageFilter
    ordering_fields = ["received_at"]


class RpcDocumentView(CallsAsCaller, APIView):
    """A GET answered from the gRPC service: query parameters checked by `query_class`, the
    document built by `fetch`, as JSON, the browsable API or CSV (`?format=csv`)."""

    renderer_classes = [FastJSONRenderer, BrowsableAPIRenderer, CSVRenderer]
    query_class = RangeQuery
    csv_name = ""
    # End of the requested range, for the caching decision.
    range_end: Instant | None = None

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
        start, end = resolve_range(
            meter=meter, start=params.pop("start_time"), end=params.pop("end_time"), zone=params.get("time_zone"),
        )
        self.range_end = end
        key = answer_key(meter=meter, url=request.build_absolute_uri(), end=end, caller=lambda: caller_of(request))
        answer = cached_answer(key)
        if answer is None:
            answer = (self.fetch(meter=meter, start=start, end=end, **params), dict(self.headers))
            keep_answer(key, answer)
        document, headers = answer
        self.headers.update(headers)
        return Response(document)

    def fetch(self, *, meter: str, start: Instant, end: Instant, **params) -> dict:
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
        if self.range_end is not None and self.range_end.ceil() <= time.time():
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


@extend_schema_view(
    get=extend_schema(
        summary="Readings of a meter in a range, paged",
        parameters=[ReadingsQuery, *openapi.COMMON_PARAMETERS],
        responses=openapi.rpc_document_responses(ReadingsDocument),
    ),
    post=extend_schema(
        summary="Write readings of a meter (a member of its account, with a write key or signed in; staff)",
        description=openapi.WRITE_DESCRIPTION,
        parameters=[openapi.METER_PARAMETER],
        request=openapi.WRITE_REQUEST,
        responses=openapi.write_responses(WriteResultDocument),
        examples=openapi.WRITE_EXAMPLES,
    ),
)
class ReadingsView(RpcDocumentView):
    """Readings of a meter in [start, end), oldest first, from the gRPC service (ListReadings).

    A page holds `page_size` readings; `next` (and the `Link: rel="next"` header) is the URL of
    the next page. A range that has ended carries an ETag; If-None-Match gets a 304.

    POST writes readings (a CSV file, or JSON) through WriteReadings: see the schema.
    """

    query_class = ReadingsQuery
    csv_name = "readings"
    parser_classes = [LimitedJSONParser, ReadingsCSVParser]

    def post(self, request, meter):
        rows = request.data
        if not isinstance(rows, uploads.RowsSent):
            # An empty body is parsed by no parser.
            is_csv = request.content_type.partition(";")[0].strip().lower() == ReadingsCSVParser.media_type
            rows = csv_body(b"") if is_csv else uploads.json_rows(readings_of_json(rows))
        return Response(uploads.readings_write(meter=meter, rows=rows))

    def fetch(self, *, meter, start, end, page_size, page_token, **params):
        document = documents.reading_page(
            meter=meter, start=start, end=end, page_size=page_size, page_token=page_token, next_url=self._next_url,
        )
        if document["next"]:
            self.headers["Link"] = f'<{document["next"]}>; rel="next"'
        return document

    def _next_url(self, token: str) -> str:
        return replace_query_param(self.request.build_absolute_uri(), "page_token", token)

    def csv_table(self, document):
        yield ["time", "value"]
        for reading in document["readings"]:
            yield [reading["time"], reading["value"]]


@extend_schema(
    summary="Readings of a meter summed up per window",
    parameters=[AggregatesQuery, *openapi.COMMON_PARAMETERS],
    responses=openapi.rpc_document_responses(AggregatesDocument),
)
class AggregatesView(RpcDocumentView):
    """Count, sum, mean, min, max and coverage per window (15m, hour, day, week, month) of
    [start, end), from the gRPC service (AggregateReadings). Days, weeks and months follow the
    wall clock of `tz` (a day with a clock change lasts 23 or 25 hours); empty windows are kept.
    CSV holds the windows. A range that has ended carries an ETag; If-None-Match gets a 304.
    """

    query_class = AggregatesQuery
    csv_name = "aggregates"

    def fetch(self, *, meter, start, end, window, time_zone=None, **params):
        zone = time_zone.key if time_zone else ""
        return documents.aggregates(meter=meter, start=start, end=end, window=window, time_zone=zone)

    def csv_table(self, document):
        columns = ["start", "end", "count", "expected_count", "coverage", "sum", "mean", "min", "max"]
        yield columns
        for bucket in document["buckets"]:
            yield [bucket[column] for column in columns]


@extend_schema(
    summary="Completeness of a meter's readings in a range, and the gaps",
    parameters=[RangeQuery, *openapi.COMMON_PARAMETERS],
    responses=openapi.rpc_document_responses(CompletenessDocument),
)
class CompletenessView(RpcDocumentView):
    """Expected, present and missing readings at the meter's interval in [start, end), and the
    runs of missing ones, from the gRPC service (GetCompleteness). CSV holds the gaps. A range
    that has ended carries an ETag; If-None-Match gets a 304."""

    csv_name = "gaps"

    def fetch(self, *, meter, start, end, **params):
        return documents.completeness(meter=meter, start=start, end=end)

    def csv_table(self, document):
        yield ["start", "end", "missing_count"]
        for gap in document["gaps"]:
            yield [gap["start"], gap["end"], gap["missing_count"]]


@extend_schema(
    summary="Changes of a meter's readings, for clients that poll",
    parameters=[ChangesQuery, openapi.METER_PARAMETER],
    responses=openapi.with_problems(ChangesDocument, 400, 401, 403, 404, 406, 502, 503, 504),
)
class ChangesView(CallsAsCaller, APIView):
    """Readings of a meter as writes commit them (imports, writes, corrections), oldest first,
    from the gRPC service (WatchReadings, caught up and ended). Poll with `after` set to the
    `next` of the previous answer; the first call, without it, starts the feed now. An answer
    holds at most CHANGES_PER_ANSWER (10,000) changes; `more` says others wait. 400 for a token of another meter or
    older than the change log keeps (CHANGE_LOG_DAYS): read the readings again and start anew.
    Never cached.
    """

    renderer_classes = [FastJSONRenderer, BrowsableAPIRenderer]
    query_class = ChangesQuery

    def get(self, request, meter):
        query = self.query_class(data=request.query_params)
        query.is_valid(raise_exception=True)
        response = Response(documents.changes(meter=meter, after=query.validated_data["resume_token"]))
        response["Cache-Control"] = "no-store"
        return response
