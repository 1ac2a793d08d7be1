"""Every error of the HTTP API as an RFC 9457 problem document (application/problem+json).

`problem_exception_handler` is DRF's EXCEPTION_HANDLER: it covers DRF's own errors (400, 401, 403,
404, 405, 406, ...), failed gRPC calls (RpcFailed) and unexpected exceptions (500). The handler400,
403, 404 and 500 views here do the same for errors under /api/ that no DRF view handles.
"""
import logging
import math
from http import HTTPStatus

import grpc
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpResponse
from django.views import defaults
from rest_framework import exceptions
from rest_framework.views import set_rollback

from gateway.api.renderers import dumps
from readings.domain import DESCRIPTION_CHARACTERS, cut_short
from gateway.api.serializers import parameters_of_fields
from gateway.client import RpcFailed

logger = logging.getLogger(__name__)

PROBLEM_CONTENT_TYPE = "application/problem+json"
API_PREFIX = "/api/"

# After google.rpc.Code's HTTP mapping, but for RESOURCE_EXHAUSTED: the service sheds load past
# its capacity, which is a 503 to retry later, not a client over its quota (429). Failures of the
# upstream server itself are a bad gateway.
HTTP_STATUS_OF_CODE = {
    grpc.StatusCode.INVALID_ARGUMENT: 400,
    grpc.StatusCode.FAILED_PRECONDITION: 400,
    grpc.StatusCode.OUT_OF_RANGE: 400,
    grpc.StatusCode.UNAUTHENTICATED: 401,
    grpc.StatusCode.PERMISSION_DENIED: 403,
    grpc.StatusCode.NOT_FOUND: 404,
    grpc.StatusCode.ALREADY_EXISTS: 409,
    grpc.StatusCode.ABORTED: 409,
    grpc.StatusCode.RESOURCE_EXHAUSTED: 503,
    grpc.StatusCode.UNAVAILABLE: 503,
    grpc.StatusCode.DEADLINE_EXCEEDED: 504,
}
BAD_GATEWAY = 502


class Problem(exceptions.APIException):
    """An error whose problem document carries extension members (`errors`, ...)."""

    def __init__(self, status: int, detail: str, **members):
        self.status_code = status
        self.members = members
        super().__init__(detail)


class PayloadTooLarge(exceptions.APIException):
    status_code = 413
    default_detail = "the request body is too large"


def http_status_of(code: grpc.StatusCode) -> int:
    return HTTP_STATUS_OF_CODE.get(code, BAD_GATEWAY)


def problem_response(
    status: int, detail: str, *, instance: str = "", headers: dict | None = None, **members
) -> HttpResponse:
    """A problem document; `members` are extension members (grpc_code, errors)."""
    try:
        title = HTTPStatus(status).phrase
    except ValueError:  # a status without a registered phrase
        title = "Error"
    body = {"type": "about:blank", "title": title, "status": status, "detail": detail}
    if instance:
        body["instance"] = instance
    body.update(members)
    response = HttpResponse(dumps(body), status=status, content_type=PROBLEM_CONTENT_TYPE)
    for name, value in (headers or {}).items():
        response[name] = value
    return response


# DRF's and django-filter's messages quote the value they refuse whole ('"…" is not a valid
# choice.'); a problem cuts each one as the service cuts its violations (DESCRIPTION_CHARACTERS).


def _field_errors(detail, prefix: str = "") -> list[dict]:
    """DRF's nested validation messages as a flat list of {"field", "description"}."""
    if isinstance(detail, dict):
        errors = []
        for key, value in detail.items():
            name = f"{prefix}.{key}" if prefix else str(key)
            errors += _field_errors(value, "" if key == "non_field_errors" else name)
        return errors
    if isinstance(detail, list):
        return [error for item in detail for error in _field_errors(item, prefix)]
    return [{"field": prefix, "description": cut_short(str(detail), DESCRIPTION_CHARACTERS)}]


def summary_of(errors: list[dict]) -> str:
    return "; ".join(f"{e['field']}: {e['description']}" if e["field"] else e["description"] for e in errors)


def _rpc_problem(error: RpcFailed, instance: str, parameter_of_field: dict[str, str]) -> HttpResponse:
    status = http_status_of(error.code)
    members = {"grpc_code": error.code.name}
    detail = error.detail
    if error.violations:
        errors = [
            {"field": parameter_of_field.get(v.field, v.field), "description": v.description}
            for v in error.violations
        ]
        members["errors"] = errors
        detail = summary_of(errors)
    headers = {"Retry-After": "5"} if status == 503 else None
    return problem_response(status, detail, instance=instance, headers=headers, **members)


def problem_exception_handler(exc, context):
    request = context.get("request")
    instance = request.path if request is not None else ""
    if isinstance(exc, RpcFailed):
        # The service names its request's fields; the client knows the view's query parameters.
        query_class = getattr(context.get("view"), "query_class", None)
        return _rpc_problem(exc, instance, parameters_of_fields(query_class))
    if isinstance(exc, Http404):
        exc = exceptions.NotFound()
    elif isinstance(exc, PermissionDenied):
        exc = exceptions.PermissionDenied()
    set_rollback()
    if isinstance(exc, exceptions.APIException):
        headers = {}
        if getattr(exc, "auth_header", None):
            headers["WWW-Authenticate"] = exc.auth_header
        if getattr(exc, "wait", None):
            headers["Retry-After"] = str(math.ceil(exc.wait))
        if isinstance(exc, exceptions.ValidationError):
            errors = _field_errors(exc.detail)
            return problem_response(exc.status_code, summary_of(errors), instance=instance, headers=headers, errors=errors)
        if isinstance(exc, Problem):
            return problem_response(exc.status_code, str(exc.detail), instance=instance, headers=headers, **exc.members)
        return problem_response(exc.status_code, str(exc.detail), instance=instance, headers=headers)
    logger.error("unexpected error answering %s", instance, exc_info=exc)
    return problem_response(500, "the server failed to answer this request; the error is logged", instance=instance)


def bad_request(request, exception):
    """handler400 (a disallowed host, a malformed request): a problem document under /api/."""
    if request.path.startswith(API_PREFIX):
        return problem_response(400, "the request cannot be read", instance=request.path)
    return defaults.bad_request(request, exception)


def permission_denied(request, exception):
    """handler403 (CSRF and other refusals outside the API views): a problem document under /api/."""
    if request.path.startswith(API_PREFIX):
        return problem_response(403, "this request is not allowed", instance=request.path)
    return defaults.permission_denied(request, exception)


def not_found(request, exception):
    """handler404: a problem document under /api/, Django's page elsewhere."""
    if request.path.startswith(API_PREFIX):
        return problem_response(404, "no resource at this URL", instance=request.path)
    return defaults.page_not_found(request, exception)


def server_error(request):
    """handler500: a problem document under /api/, Django's page elsewhere."""
    if request.path.startswith(API_PREFIX):
        return problem_response(500, "the server failed to answer this request; the error is logged", instance=request.path)
    return defaults.server_error(request)
