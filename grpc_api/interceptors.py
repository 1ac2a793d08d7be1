"""Server interceptors: one log line and the metrics of every call, the calls in flight,
bearer-token authentication, and database connections closed around every call (streams included)."""
import hmac
import logging
import threading
import time

import grpc
from django.db import close_old_connections
from grpc_health.v1 import health

from grpc_api.metrics import HANDLED, HANDLING, IN_FLIGHT

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
    """Logs one line per call (method, status code, duration), records its metrics, and counts
    the calls in flight, which a graceful stop waits for."""

    def __init__(self):
        self._in_flight = 0
        self._lock = threading.Lock()
        self._idle = threading.Condition(self._lock)

    @property
    def in_flight(self) -> int:
        return self._in_flight

    def wait_idle(self, timeout: float) -> bool:
        """Wait until no call is in flight, at most `timeout` seconds; whether none is."""
        with self._idle:
            return self._idle.wait_for(lambda: self._in_flight == 0, timeout=timeout)

    def _enter(self) -> None:
        with self._lock:
            self._in_flight += 1
        IN_FLIGHT.inc()

    def _leave(self, method: str, status: str, began: float, extra: str = "") -> None:
        elapsed = time.perf_counter() - began
        with self._idle:
            self._in_flight -= 1
            self._idle.notify_all()
        IN_FLIGHT.dec()
        HANDLED.labels(method, status).inc()
        HANDLING.labels(method).observe(elapsed)
        logger.info("%s %s %.1fms%s", method, status, elapsed * 1000, extra)

    def intercept_service(self, continuation, handler_call_details):
        method = handler_call_details.method
        return _wrap_behavior(
            continuation(handler_call_details),
            lambda behavior: self._unary(behavior, method),
            lambda behavior: self._stream(behavior, method),
        )

    def _unary(self, behavior, method):
        def logged(request, context):
            began, failed = time.perf_counter(), True
            self._enter()
            try:
                response = behavior(request, context)
                failed = False
                return response
            finally:
                self._leave(method, _status_name(context, failed), began)

        return logged

    def _stream(self, behavior, method):
        def logged(request, context):
            began, failed, sent = time.perf_counter(), True, 0
            self._enter()
            try:
                for message in behavior(request, context):
                    sent += 1
                    yield message
                failed = False
            finally:
                self._leave(method, _status_name(context, failed), began, f" messages={sent}")

        return logged


def _status_name(context, failed: bool) -> str:
    code = context.code()
    if code is not None:
        return code.name
    if not context.is_active():
        remaining = context.time_remaining()
        return "DEADLINE_EXCEEDED" if remaining is not None and remaining <= 0 else "CANCELLED"
    return "UNKNOWN" if failed else "OK"


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
