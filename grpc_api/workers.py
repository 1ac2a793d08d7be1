"""Sync behaviours on the asyncio server: each runs in the worker pool one step at a time (a unary
call, or one message of a stream), so a stream holds no thread between its messages.

grpc.aio runs sync handlers in its `migration_thread_pool` itself, but in grpcio 1.85 a sync stream
keeps its pool thread until it ends (for ever once its client has gone), and the context it gives
sync handlers has no code(), is_active() or abort_with_status(), which the servicer and the call
log use. So the server asks it only for what stays on the loop.
"""
import asyncio
import inspect
import threading
from concurrent import futures

import grpc

from grpc_api.errors import busy
from grpc_api.rpc_metrics import REFUSED

_END = object()

# Methods of the asyncio context that are plain, non-blocking reads and writes of the call's state.
_SHARED = frozenset({
    "auth_context", "code", "details", "disable_next_message_compression", "invocation_metadata",
    "peer", "peer_identities", "peer_identity_key", "set_code", "set_compression", "set_details",
    "set_trailing_metadata", "time_remaining", "trailing_metadata",
})


def is_async(behavior) -> bool:
    """Whether `behavior` runs on the event loop (a coroutine or an async generator function)."""
    return inspect.iscoroutinefunction(behavior) or inspect.isasyncgenfunction(behavior)


class Aborted(Exception):
    """Raised by SyncContext.abort: the call ends with (code, details, trailing metadata)."""


class SyncContext:
    """A grpc.ServicerContext for sync code in a worker thread, over the call's asyncio context."""

    def __init__(self, context, loop: asyncio.AbstractEventLoop):
        self._context = context
        self._loop = loop
        # Set on the loop when the call is cancelled (by its client or its deadline).
        self.cancelled = False

    def __getattr__(self, name):
        if name in _SHARED:
            return getattr(self._context, name)
        raise AttributeError(name)

    def _on_loop(self, coroutine):
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop).result()

    def abort(self, code, details: str = "", trailing_metadata=()):
        # As a sync server does, the status goes out once the behaviour has ended (its wrappers'
        # logs and metrics done), not now: WorkerPoolInterceptor sends it.
        self._context.set_code(code)
        self._context.set_details(details)
        raise Aborted(code, details, tuple(trailing_metadata))

    def abort_with_status(self, status):
        self.abort(status.code, status.details, status.trailing_metadata)

    def send_initial_metadata(self, metadata):
        self._on_loop(self._context.send_initial_metadata(tuple(metadata)))

    def is_active(self) -> bool:
        # Not the deadline by the clock: a stream that ended on it would end OK just before the
        # deadline cancels the call (which sets `cancelled`).
        return not (self.cancelled or self._context.done())

    def add_callback(self, callback) -> bool:
        self._context.add_done_callback(lambda _context: callback())
        return True


async def _result(step: futures.Future, context):
    """What a step returned; a step that aborted the call ends it with the status it gave."""
    try:
        return await asyncio.wrap_future(step)
    except Aborted as aborted:
        await context.abort(*aborted.args)


def _open(behavior, request, context):
    """A stream's first step: its messages, and the first of them (_END if none)."""
    messages = iter(behavior(request, context))
    return messages, next(messages, _END)


_BUSY = busy()


async def _refuse(_request, context):
    REFUSED.inc()
    await context.abort(_BUSY.code, _BUSY.details, _BUSY.trailing_metadata)


async def _refuse_stream(request, context):
    await _refuse(request, context)
    yield  # never reached: an async generator, as a server-streaming handler is


# No request deserializer: the request of a refused call is not read.
_REFUSE_UNARY = grpc.unary_unary_rpc_method_handler(_refuse)
_REFUSE_STREAM = grpc.unary_stream_rpc_method_handler(_refuse_stream)


class WorkerPoolInterceptor(grpc.aio.ServerInterceptor):
    """Runs sync behaviours in `workers`, one step at a time, and admits at most `limit` calls
    into the pool at once: more are refused at once with RESOURCE_EXHAUSTED.

    A refusal is to be the cheapest answer there is: a call to a method known to run in the pool
    that arrives when the pool is full is refused before anything else is made for it (its
    request is not even parsed, the other interceptors not asked).

    A unary call counts until it ends; a stream only until its first message, after which its
    steps queue like any other but refuse no one: an admitted stream is never cut off, and a
    stream waiting for its client holds nothing. Calls served on the loop (health, async
    streams) do not count at all.
    """

    def __init__(self, workers: futures.ThreadPoolExecutor, limit: int):
        self.workers = workers
        self.limit = limit
        self._admitted = 0
        self._lock = threading.Lock()
        # Method → the refusal handler of its kind, for the methods that run in the pool.
        self._refusals: dict[str, grpc.RpcMethodHandler] = {}

    async def intercept_service(self, continuation, handler_call_details):
        refusal = self._refusals.get(handler_call_details.method)
        if refusal is not None and self._admitted >= self.limit:
            return refusal
        handler = await continuation(handler_call_details)
        if handler is None:
            return None
        if handler.unary_unary and not is_async(handler.unary_unary):
            self._refusals.setdefault(handler_call_details.method, _REFUSE_UNARY)
            return handler._replace(unary_unary=self._unary(handler.unary_unary))
        if handler.unary_stream and not is_async(handler.unary_stream):
            self._refusals.setdefault(handler_call_details.method, _REFUSE_STREAM)
            return handler._replace(unary_stream=self._stream(handler.unary_stream))
        # Client streams (none served yet) are left to grpc.aio's migration_thread_pool.
        return handler

    async def _admitted_step(self, context, function, *args) -> futures.Future:
        with self._lock:
            admitted = self._admitted < self.limit
            self._admitted += admitted
        if not admitted:
            await _refuse(None, context)
        step = self.workers.submit(function, *args)
        # Counted until the step has run (or, still queued, was cancelled), not until awaited.
        step.add_done_callback(self._release)
        return step

    def _release(self, _step) -> None:
        with self._lock:
            self._admitted -= 1

    def _unary(self, behavior):
        async def unary(request, context):
            sync_context = SyncContext(context, asyncio.get_running_loop())
            step = await self._admitted_step(context, behavior, request, sync_context)
            try:
                return await _result(step, context)
            except asyncio.CancelledError:
                sync_context.cancelled = True
                raise

        return unary

    def _stream(self, behavior):
        async def stream(request, context):
            sync_context = SyncContext(context, asyncio.get_running_loop())
            step = await self._admitted_step(context, _open, behavior, request, sync_context)
            messages, ended = None, False
            try:
                messages, message = await _result(step, context)
                while message is not _END:
                    yield message
                    step = self.workers.submit(next, messages, _END)
                    message = await _result(step, context)
                ended = True
            except (asyncio.CancelledError, GeneratorExit):
                sync_context.cancelled = True
                raise
            finally:
                if not ended:
                    await self._close(step, messages)

        return stream

    async def _close(self, step: futures.Future, messages) -> None:
        """Close a stream left unfinished, in a worker, where its own cleanup (call log, database
        connections) belongs; after its last step, which runs to its end even when cancelled."""
        if not step.done():
            await asyncio.wait([asyncio.wrap_future(step)])
        if messages is None and not step.cancelled() and step.exception() is None:
            messages, _ = step.result()
        if hasattr(messages, "close"):
            await asyncio.wrap_future(self.workers.submit(messages.close))
