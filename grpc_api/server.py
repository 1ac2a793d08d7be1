"""Building the gRPC server: the meterusage service, health, reflection and the interceptors.

One asyncio server, its event loop in a thread of its own: async behaviours (long-lived watch
streams) wait on the loop and take no thread; sync ones run in the worker pool a step at a time
(grpc_api/workers.py).
"""
import asyncio
import gc
import logging
import threading
import time
from collections.abc import Sequence
from concurrent import futures
from dataclasses import dataclass, field

import grpc
from django.db import connection
from django_grpc_framework.settings import grpc_settings
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection, reflection_pb2

from grpc_api.contract import MAX_MESSAGE_BYTES, SERVICE_NAME
from grpc_api.interceptors import CallLogInterceptor, DatabaseConnectionInterceptor
from grpc_api.rate_limits import RateLimitInterceptor
from grpc_api.watch import stop_hub
from grpc_api.workers import WorkerPoolInterceptor

logger = logging.getLogger(__name__)

SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING
# grpc.reflection.v1 is v1alpha under a new name, message for message: clients that ask for it
# first (grpcurl, Postman) are answered by the same servicer.
REFLECTION_V1 = "grpc.reflection.v1.ServerReflection"
# Calls admitted beyond the worker threads wait in a queue this many times as long; past it a call
# is refused at once with RESOURCE_EXHAUSTED rather than left to time out.
QUEUE_PER_WORKER = 2


class LoopHealth:
    """The asyncio health servicer, set from any thread: its methods are coroutines of the loop."""

    def __init__(self, servicer: health.aio.HealthServicer, loop: asyncio.AbstractEventLoop):
        self.servicer = servicer
        self.loop = loop

    def _on_loop(self, coroutine) -> None:
        if self.loop.is_running():
            asyncio.run_coroutine_threadsafe(coroutine, self.loop).result()
        else:
            coroutine.close()

    def set(self, service: str, status) -> None:
        self._on_loop(self.servicer.set(service, status))

    def enter_graceful_shutdown(self) -> None:
        """NOT_SERVING for every service from now on."""
        self._on_loop(self.servicer.enter_graceful_shutdown())


class StoreHealth(threading.Thread):
    """Checks every `every` seconds that the relational store answers (every call needs it: it
    says who a meter is) and reports SERVING or NOT_SERVING accordingly, until stopped."""

    def __init__(self, health_servicer: LoopHealth, every: float):
        super().__init__(name="grpc-store-health", daemon=True)
        self.health_servicer = health_servicer
        self.every = every
        self.stopping = threading.Event()
        self.serving: bool | None = None

    def check(self) -> bool:
        try:
            with connection.cursor() as cursor:
                cursor.execute("SELECT 1")
            return True
        except Exception as exc:  # noqa: BLE001  (whatever stops the store answering, it is not serving)
            logger.warning("health: the relational store does not answer: %s", exc)
            connection.close()
            return False

    def run(self) -> None:
        try:
            while not self.stopping.is_set():
                serving = self.check()
                if serving != self.serving and not self.stopping.is_set():
                    self.serving = serving
                    for service in ("", SERVICE_NAME):
                        self.health_servicer.set(service, SERVING if serving else NOT_SERVING)
                self.stopping.wait(self.every)
        finally:
            connection.close()


@dataclass
class RunningServer:
    server: grpc.aio.Server
    port: int
    health: LoopHealth
    calls: CallLogInterceptor
    workers: futures.ThreadPoolExecutor
    loop: asyncio.AbstractEventLoop
    loop_thread: threading.Thread
    store_health: StoreHealth | None = field(default=None)

    def stop(self, grace: float | None = None) -> None:
        """Report NOT_SERVING, keep answering while calls in flight finish (within `grace`
        seconds, health checks answered NOT_SERVING all along), then stop."""
        if self.store_health is not None:
            self.store_health.stopping.set()
        self.health.enter_graceful_shutdown()
        # Open watches are not work in flight: they end now, their clients resume elsewhere.
        asyncio.run_coroutine_threadsafe(stop_hub(), self.loop).result(timeout=30)
        began = time.monotonic()
        if grace:
            # Health checkers get a moment to see NOT_SERVING even when nothing is in flight.
            time.sleep(min(grace, 1.0))
            self.calls.wait_idle(max(grace - (time.monotonic() - began), 0))
        remaining = max((grace or 0) - (time.monotonic() - began), 0)
        asyncio.run_coroutine_threadsafe(self.server.stop(remaining), self.loop).result()
        if self.store_health is not None:
            self.store_health.join(timeout=5)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.loop_thread.join()
        self.loop.close()
        # The worker threads end, and with them the database connections they kept (collected
        # now rather than whenever: a database is not dropped while connections stay).
        self.workers.shutdown(wait=True)
        gc.collect()


def create_server(
    address: str,
    *,
    max_workers: int = 10,
    tls: tuple[bytes, bytes] | None = None,
    health_check_seconds: float | None = None,
    extra_handlers: Sequence[grpc.GenericRpcHandler] = (),
    rate_per_address: tuple[int, float] | None = None,
    rate_per_key: tuple[int, float] | None = None,
    rate_exempt_tokens: Sequence[str] = (),
) -> RunningServer:
    """A started server on `address` ("127.0.0.1:0" picks a free port), with health and reflection.

    Who may read and write what is decided per call (accounts/access.py); `tls` is (private key PEM, certificate chain PEM).
    At most `max_workers` sync calls run at once and QUEUE_PER_WORKER times as many wait; more are
    refused with RESOURCE_EXHAUSTED. Health follows the relational store, checked every
    `health_check_seconds` (None: always SERVING until stopped). `extra_handlers` are served too.
    `rate_per_key` and `rate_per_address` (calls, seconds) limit each key and each client address,
    except callers with one of `rate_exempt_tokens` (grpc_api/rate_limits.py).
    """
    loop = asyncio.new_event_loop()
    loop_thread = threading.Thread(target=loop.run_forever, name="grpc-loop", daemon=True)
    loop_thread.start()
    workers = futures.ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix="grpc")
    calls = CallLogInterceptor()
    try:
        server, port, health_servicer = asyncio.run_coroutine_threadsafe(
            _started(address, workers, max_workers, calls, tls, extra_handlers, rate_per_address, rate_per_key,
                     list(rate_exempt_tokens)), loop
        ).result()
    except BaseException:
        loop.call_soon_threadsafe(loop.stop)
        loop_thread.join()
        loop.close()
        workers.shutdown(wait=False)
        raise
    health_servicer = LoopHealth(health_servicer, loop)
    for service in ("", SERVICE_NAME):
        health_servicer.set(service, SERVING)
    store_health = None
    if health_check_seconds:
        store_health = StoreHealth(health_servicer, health_check_seconds)
        store_health.start()
    return RunningServer(server, port, health_servicer, calls, workers, loop, loop_thread, store_health)


async def _started(
    address, workers, max_workers, calls, tls, extra_handlers, rate_per_address, rate_per_key, rate_exempt_tokens,
):
    """The server, built and started on the loop (an asyncio server belongs to the loop it is made on)."""
    # Admission is the pool's, not grpc.aio's maximum_concurrent_rpcs: that counts every open call,
    # so a thousand watch streams on the loop would refuse unary calls that no thread is busy with.
    interceptors = [
        WorkerPoolInterceptor(workers, limit=max_workers * (1 + QUEUE_PER_WORKER)),
        calls,
        DatabaseConnectionInterceptor(),
    ]
    if rate_per_address or rate_per_key:
        # Outermost: a call past its rate is refused before anything is done for it.
        interceptors.insert(0, RateLimitInterceptor(
            per_key=rate_per_key, per_address=rate_per_address, exempt_tokens=rate_exempt_tokens,
        ))
    server = grpc.aio.server(
        # Only for client-streaming sync handlers, which WorkerPoolInterceptor leaves to grpc.
        migration_thread_pool=workers,
        handlers=list(extra_handlers),
        interceptors=interceptors,
        options=[
            ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
            ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
            ("grpc.so_reuseport", 0),
        ],
    )
    grpc_settings.ROOT_HANDLERS_HOOK(server)
    health_servicer = health.aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    services = [SERVICE_NAME, health.SERVICE_NAME, reflection.SERVICE_NAME, REFLECTION_V1]
    reflection.enable_server_reflection(services, server)
    _add_reflection_v1(server, services)
    try:
        if tls:
            port = server.add_secure_port(address, grpc.ssl_server_credentials([tls]))
        else:
            port = server.add_insecure_port(address)
    except RuntimeError:
        port = 0
    if not port:
        raise OSError(f"cannot listen on {address}")
    await server.start()
    return server, port, health_servicer


def _add_reflection_v1(server: grpc.aio.Server, services: list[str]) -> None:
    servicer = reflection.aio.ReflectionServicer(services)
    handler = grpc.stream_stream_rpc_method_handler(
        servicer.ServerReflectionInfo,
        request_deserializer=reflection_pb2.ServerReflectionRequest.FromString,
        response_serializer=reflection_pb2.ServerReflectionResponse.SerializeToString,
    )
    server.add_generic_rpc_handlers(
        [grpc.method_handlers_generic_handler(REFLECTION_V1, {"ServerReflectionInfo": handler})]
    )
