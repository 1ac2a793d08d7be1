"""OpenAPI pieces shared by the views: the `format` parameter and the documented error responses."""
from drf_spectacular.openapi import AutoSchema
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiExample, OpenApiParameter, OpenApiResponse

from readings.api.serializers import ProblemDocument

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
