"""Server interceptors: one log line per call, bearer-token authentication, and database
connections closed around every call (streams included)."""
import hmac
import logging
import time

import grpc
from django.db import close_old_connections
from grpc_health.v1 import health

logger = logging.getLogger("grpc_api.calls")

HEALTH_METHOD_PREFIX = f"/{health.SERVICE_NAME}/"


def _wrap_behavior(handler, wrap_unary, wrap_stream):
    """`handler` with its behaviour wrapped: unary responses by `wrap_unary`, server streams by
    `wrap_stream` (each takes the behaviour and the method name)."""
    if handler is None:
        return None
    if handler.unary_unary:
        return handler._replace(unary_unary=wrap_unary(handler.unary_unary))
    if handler.unary_stream:
        return handler._replace(unary_stream=wrap_stream(handler.unary_stream))
    return handler


class DatabaseConnectionInterceptor(grpc.ServerInterceptor):
    """Closes this thread's database connections when they are broken or past
    DATABASE_CONN_MAX_AGE, before and after every call, as Django does around a request.

    After a stream, too: django-grpc-framework's end-of-call signal fires before a stream's body
    has run, so it cannot do this for streams.
    """

    def intercept_service(self, continuation, handler_call_details):
        return _wrap_behavior(continuation(handler_call_details), _closing_unary, _closing_stream)


def _closing_unary(behavior):
    def call(request, context):
        close_old_connections()
        try:
            return behavior(request, context)
        finally:
            close_old_connections()

    return call


def _closing_stream(behavior):
    def call(request, context):
        close_old_connections()
        try:
            yield from behavior(request, context)
        finally:
            close_old_connections()

    return call


class CallLogInterceptor(grpc.ServerInterceptor):
    """Logs one line per call: method, status code and duration."""

    def intercept_service(self, continuation, handler_call_details):
        method = handler_call_details.method
        return _wrap_behavior(
            continuation(handler_call_details),
            lambda behavior: _logged_unary(behavior, method),
            lambda behavior: _logged_stream(behavior, method),
        )


def _status_name(context, failed: bool) -> str:
    code = context.code()
    if code is not None:
        return code.name
    if not context.is_active():
        remaining = context.time_remaining()
        return "DEADLINE_EXCEEDED" if remaining is not None and remaining <= 0 else "CANCELLED"
    return "UNKNOWN" if failed else "OK"


def _logged_unary(behavior, method):
    def logged(request, context):
        began, failed = time.perf_counter(), True
        try:
            response = behavior(request, context)
            failed = False
            return response
        finally:
            _log(method, _status_name(context, failed), began)

    return logged


def _logged_stream(behavior, method):
    def logged(request, context):
        began, failed, sent = time.perf_counter(), True, 0
        try:
            for message in behavior(request, context):
                sent += 1
                yield message
            failed = False
        finally:
            _log(method, _status_name(context, failed), began, f" messages={sent}")

    return logged


def _log(method: str, status: str, began: float, extra: str = "") -> None:
    logger.info("%s %s %.1fms%s", method, status, (time.perf_counter() - began) * 1000, extra)


class TokenAuthInterceptor(grpc.ServerInterceptor):
    """Requires `authorization: Bearer <token>` with one of `tokens`; health checks stay open."""

    def __init__(self, tokens: list[str]):
        self.tokens = [t.encode() for t in tokens]

    def _authorized(self, metadata) -> bool:
        header = dict(metadata or ()).get("authorization", "")
        scheme, _, presented = header.partition(" ")
        if scheme.lower() != "bearer" or not presented:
            return False
        return any(hmac.compare_digest(presented.encode(), token) for token in self.tokens)

    def intercept_service(self, continuation, handler_call_details):
        if handler_call_details.method.startswith(HEALTH_METHOD_PREFIX) or self._authorized(
            handler_call_details.invocation_metadata
        ):
            return continuation(handler_call_details)
        handler = continuation(handler_call_details)
        if handler is None:
            return None

        def deny(request, context):
            context.abort(grpc.StatusCode.UNAUTHENTICATED, "a valid 'authorization: Bearer <token>' is required")

        if handler.unary_stream:
            return grpc.unary_stream_rpc_method_handler(
                deny,
                request_deserializer=handler.request_deserializer,
                response_serializer=handler.response_serializer,
            )
        return grpc.unary_unary_rpc_method_handler(
            deny,
            request_deserializer=handler.request_deserializer,
            response_serializer=handler.response_serializer,
        )
