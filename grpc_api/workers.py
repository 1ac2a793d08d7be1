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
        # Sends the status, then raises here what the asyncio context raises, as a sync abort does.
        self._on_loop(self._context.abort(code, details, tuple(trailing_metadata)))

    def abort_with_status(self, status):
        self.abort(status.code, status.details, status.trailing_metadata)

    def send_initial_metadata(self, metadata):
        self._on_loop(self._context.send_initial_metadata(tuple(metadata)))

    def is_active(self) -> bool:
        remaining = self._context.time_remaining()
        return not (self.cancelled or self._context.done() or (remaining is not None and remaining <= 0))

    def add_callback(self, callback) -> bool:
        self._context.add_done_callback(lambda _context: callback())
        return True


class WorkerPoolInterceptor(grpc.aio.ServerInterceptor):
    """Runs sync behaviours in `workers`, one step at a time. A call that would find `limit`
    steps already running or waiting is refused at once with RESOURCE_EXHAUSTED.

    Only work for the pool counts: a stream waiting for its client, or anything on the loop
    (health, async streams), takes no place a unary call would need.
    """

    def __init__(self, workers: futures.ThreadPoolExecutor, limit: int):
        self.workers = workers
        self.limit = limit
        self._steps = 0
        self._lock = threading.Lock()

    async def intercept_service(self, continuation, handler_call_details):
        handler = await continuation(handler_call_details)
        if handler is None:
            return None
        if handler.unary_unary and not is_async(handler.unary_unary):
            return handler._replace(unary_unary=self._unary(handler.unary_unary))
        if handler.unary_stream and not is_async(handler.unary_stream):
            return handler._replace(unary_stream=self._stream(handler.unary_stream))
        # Client streams (none served yet) are left to grpc.aio's migration_thread_pool.
        return handler

    def _submit(self, function, *args, admit: bool = False) -> futures.Future | None:
        with self._lock:
            if admit and self._steps >= self.limit:
                return None
            self._steps += 1
        # Counted until the step has run (or, still queued, was cancelled), not until awaited.
        step = self.workers.submit(function, *args)
        step.add_done_callback(self._finished)
        return step

    def _finished(self, _step) -> None:
        with self._lock:
            self._steps -= 1

    async def _admit(self, context, behavior, request, sync_context) -> futures.Future:
        step = self._submit(behavior, request, sync_context, admit=True)
        if step is None:
            await context.abort(grpc.StatusCode.RESOURCE_EXHAUSTED, "the server is busy; try again later")
        return step

    def _unary(self, behavior):
        async def unary(request, context):
            sync_context = SyncContext(context, asyncio.get_running_loop())
            step = await self._admit(context, behavior, request, sync_context)
            try:
                return await asyncio.wrap_future(step)
            except asyncio.CancelledError:
                sync_context.cancelled = True
                raise

        return unary

    def _stream(self, behavior):
        async def stream(request, context):
            sync_context = SyncContext(context, asyncio.get_running_loop())
            step = await self._admit(context, behavior, request, sync_context)
            messages, ended = None, False
            try:
                messages = iter(await asyncio.wrap_future(step))
                while True:
                    step = self._submit(next, messages, _END)
                    message = await asyncio.wrap_future(step)
                    if message is _END:
                        ended = True
                        return
                    yield message
            except (asyncio.CancelledError, GeneratorExit):
                sync_context.cancelled = True
                raise
            finally:
                if not ended and hasattr(messages, "close"):
                    # A step cancelled while running still runs to its end; then the stream is
                    # closed in a worker, where its own cleanup (call log, connections) belongs.
                    if not step.done():
                        await asyncio.wait([asyncio.wrap_future(step)])
                    await asyncio.wrap_future(self._submit(messages.close))

        return stream
