"""Server interceptors: one log line and the metrics of every call, the calls in flight,
and database connections closed around every call (streams included).

They wrap a call's behaviour as it is: sync behaviours with sync code, which runs in the worker
thread that runs the behaviour (grpc_api/workers.py); coroutines and async generators with async
code, on the event loop.
"""
import asyncio
import contextlib
import inspect
import logging
import threading
import time

import grpc
from django.db import close_old_connections
from grpc_health.v1 import health

from grpc_api.rpc_metrics import HANDLED, HANDLING, IN_FLIGHT

logger = logging.getLogger("grpc_api.calls")

HEALTH_METHOD_PREFIX = f"/{health.SERVICE_NAME}/"


def _wrap_behavior(handler, wrapper, method: str):
    """`handler` with its behaviour wrapped by `wrapper`: its `unary`/`stream` for sync behaviours,
    `async_unary`/`async_stream` for coroutines and async generators (each takes the behaviour
    and the method name)."""
    if handler is None:
        return None
    if handler.unary_unary:
        behavior = handler.unary_unary
        wrap = wrapper.async_unary if inspect.iscoroutinefunction(behavior) else wrapper.unary
        return handler._replace(unary_unary=wrap(behavior, method))
    if handler.unary_stream:
        behavior = handler.unary_stream
        if inspect.isasyncgenfunction(behavior):
            wrap = wrapper.async_stream
        elif inspect.iscoroutinefunction(behavior):
            # A stream that writes with context.write() and returns None: awaited like a unary call.
            wrap = wrapper.async_unary
        else:
            wrap = wrapper.stream
        return handler._replace(unary_stream=wrap(behavior, method))
    return handler


class DatabaseConnectionInterceptor(grpc.aio.ServerInterceptor):
    """Closes this thread's database connections when they are broken or past
    DATABASE_CONN_MAX_AGE, before and after every call, as Django does around a request.

    After a stream, too: django-grpc-framework's end-of-call signal fires before a stream's body
    has run, so it cannot do this for streams. Behaviours on the event loop use no connection.
    """

    async def intercept_service(self, continuation, handler_call_details):
        return _wrap_behavior(await continuation(handler_call_details), self, handler_call_details.method)

    @staticmethod
    def unary(behavior, method):
        def call(request, context):
            close_old_connections()
            try:
                return behavior(request, context)
            finally:
                close_old_connections()

        return call

    @staticmethod
    def stream(behavior, method):
        def call(request, context):
            close_old_connections()
            try:
                yield from behavior(request, context)
            finally:
                close_old_connections()

        return call

    @staticmethod
    def async_unary(behavior, method):
        return behavior

    async_stream = async_unary


class CallLogInterceptor(grpc.aio.ServerInterceptor):
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

    async def intercept_service(self, continuation, handler_call_details):
        return _wrap_behavior(await continuation(handler_call_details), self, handler_call_details.method)

    def unary(self, behavior, method):
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

    def stream(self, behavior, method):
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

    def async_unary(self, behavior, method):
        async def logged(request, context):
            began, failed, active = time.perf_counter(), True, True
            self._enter()
            try:
                response = await behavior(request, context)
                failed = False
                return response
            except asyncio.CancelledError:
                active = False
                raise
            finally:
                self._leave(method, _status_name(context, failed, active), began)

        return logged

    def async_stream(self, behavior, method):
        async def logged(request, context):
            began, failed, active, sent = time.perf_counter(), True, True, 0
            self._enter()
            try:
                async with contextlib.aclosing(behavior(request, context)) as messages:
                    async for message in messages:
                        sent += 1
                        yield message
                failed = False
            except (asyncio.CancelledError, GeneratorExit):
                active = False
                raise
            finally:
                self._leave(method, _status_name(context, failed, active), began, f" messages={sent}")

        return logged


def _status_name(context, failed: bool, active: bool | None = None) -> str:
    """The status a call ended with. An asyncio context cannot say whether the call is still
    active: its wrapper passes `active` (False once the call was cancelled)."""
    code = context.code()
    if code is not None:
        return code.name
    if active is None:
        active = context.is_active()
    if not active:
        remaining = context.time_remaining()
        return "DEADLINE_EXCEEDED" if remaining is not None and remaining <= 0 else "CANCELLED"
    return "UNKNOWN" if failed else "OK"
