"""OpenAPI pieces shared by the views: the `format` parameter and the documented error responses."""
from drf_spectacular.openapi import AutoSchema
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiExample, OpenApiParameter, OpenApiResponse

from gateway.api.serializers import ProblemDocument
from readings.domain import MAX_WRITE_ROWS

METER_PARAMETER = OpenApiParameter(
    "meter", OpenApiTypes.STR, OpenApiParameter.PATH, pattern=r"^[-a-zA-Z0-9_]+$",
    description="Name of the meter.", examples=[OpenApiExample("reference meter", value="meterusage")],
)
FORMAT_PARAMETER = OpenApiParameter(
    "format", OpenApiTypes.STR, OpenApiParameter.QUERY, enum=["json", "csv"],
    description="Representation: JSON (the default) or CSV (as with `Accept: text/csv`). Browsers get "
    "the browsable API (`text/html`).",
)
COMMON_PARAMETERS = [METER_PARAMETER, FORMAT_PARAMETER]

PROBLEMS = {
    400: "Invalid parameters: `errors` names each one (from the service: INVALID_ARGUMENT).",
    401: "No valid credentials, or the gateway's token was refused by the gRPC service (UNAUTHENTICATED).",
    403: "Authenticated, but not allowed.",
    404: "No such meter (NOT_FOUND) or resource.",
    406: "No representation matches the Accept header or `format`.",
    413: "The body is larger than API_WRITE_MAX_BYTES.",
    415: "The body is neither JSON nor CSV (`Content-Type: text/csv`).",
    502: "The gRPC service failed (INTERNAL, UNKNOWN, ...).",
    503: "The gRPC service, or the store behind it, is unavailable (UNAVAILABLE). Retry later.",
    504: "The gRPC service did not answer within the deadline (DEADLINE_EXCEEDED).",
}
GATEWAY_PROBLEMS = (400, 401, 403, 404, 406, 502, 503, 504)


def problem(status: int) -> OpenApiResponse:
    return OpenApiResponse(
        ProblemDocument,
        description=PROBLEMS[status],
        examples=[OpenApiExample(
            f"problem {status}",
            value={"type": "about:blank", "title": "Service Unavailable", "status": 503,
                   "detail": "InfluxDB is unavailable; try again later", "grpc_code": "UNAVAILABLE"},
        )] if status == 503 else [],
    )


def with_problems(success, *statuses: int) -> dict:
    responses = {(200, "application/json"): success}
    for status in statuses:
        responses[(status, "application/problem+json")] = problem(status)
    return responses


def rpc_document_responses(document) -> dict:
    responses = with_problems(document, *GATEWAY_PROBLEMS)
    responses[(200, "text/csv")] = OpenApiResponse(OpenApiTypes.STR, description="The same data as CSV.")
    responses[304] = OpenApiResponse(description="Not modified: If-None-Match named the current ETag.")
    return responses


WRITE_DESCRIPTION = f"""Readings written through the gRPC service (WriteReadings), as one transaction, cleaned
by the rules of a file import and with its reasons. Readings are upserted by time: the same value
again changes nothing (`unchanged`), a new value for a time replaces the old one (`updated`, a
correction). A row without a value (empty, NaN, NA, infinite) or repeating another row with the same
value is skipped and listed in `rejected`. Any invalid row (a time that is none, or does not exist in
the meter's zone, two values for one time, a value that is no number) refuses the whole write: 400
lists each row in `errors`, nothing is written.

The body is a CSV file (`Content-Type: text/csv`, header `time,meterusage`, as `import_readings`
takes; rows are named by their line in the file) or JSON (a list of `{{"time", "value"}}`, or
`{{"readings": [...]}}`; readings are named by their index). At most {MAX_WRITE_ROWS:,} rows and
API_WRITE_MAX_BYTES. Answers 200 whatever was inserted: the document counts it.

Allowed to staff users and users with the permission `readings.add_reading` (session or
`Authorization: Token ...`): 401 without credentials, 403 for other users."""

# The JSON body is one of two shapes, which serializers cannot say (readings_of_json checks it).
_READING_IN = {
    "type": "object",
    "properties": {
        "time": {"type": "string", "maxLength": 64, "example": "2019-01-01T00:15:00Z", "description": (
            "RFC 3339, or a wall time without offset in the meter's zone (`2019-01-01 00:15:00`), as in files."
        )},
        "value": {"oneOf": [{"type": "number"}, {"type": "string"}], "nullable": True, "example": 55.09, "description": (
            "A number, or text as files hold it; null, `NaN` or `NA`: no value (skipped)."
        )},
    },
    "required": ["time", "value"],
}
WRITE_REQUEST = {
    "application/json": {"oneOf": [
        {"type": "array", "items": _READING_IN},
        {"type": "object", "properties": {"readings": {"type": "array", "items": _READING_IN}}, "required": ["readings"]},
    ]},
    "text/csv": {
        "type": "string",
        "description": "A CSV file with the header `time,meterusage` (other columns are ignored).",
        "example": "time,meterusage\n2019-01-01 00:15:00,55.09\n2019-01-01 00:30:00,54.64\n",
    },
}
WRITE_EXAMPLES = [
    OpenApiExample(
        "JSON list", request_only=True, media_type="application/json",
        value=[{"time": "2019-01-01T00:15:00Z", "value": 55.09}, {"time": "2019-01-01 00:30:00", "value": None}],
    ),
    OpenApiExample(
        "JSON object", request_only=True, media_type="application/json",
        value={"readings": [{"time": "2019-01-01T00:15:00Z", "value": 55.09}]},
    ),
    OpenApiExample(
        "written", response_only=True, status_codes=["200"],
        value={"inserted": 1, "updated": 0, "unchanged": 0, "skipped": 1,
               "rejected": [{"index": 1, "value": None, "reason": "empty value"}]},
    ),
]


def write_responses(document) -> dict:
    return with_problems(document, 400, 401, 403, 404, 413, 415, 502, 503, 504)


def empty_list_parameters_are_omitted(result, generator, request, public):
    """POSTPROCESSING_HOOKS: on lists, django-filter, ordering and paging read an empty query
    value (`?status=`) as no value; say so with allowEmptyValue."""
    for item in result["paths"].values():
        for operation in item.values():
            if operation.get("operationId", "").endswith("_list"):
                for parameter in operation.get("parameters", []):
                    if parameter["in"] == "query" and not parameter.get("required"):
                        parameter["allowEmptyValue"] = True
    return result


class PageDocumentSchema(AutoSchema):
    """For a view set whose list action answers one page document (count, next, previous,
    results), not a bare array."""

    def _is_list_view(self, serializer=None) -> bool:
        return False
