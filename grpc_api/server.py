"""Building the gRPC server: the meterusage service, health, reflection and the interceptors."""
import gc
import logging
import threading
import time
from concurrent import futures
from dataclasses import dataclass, field

import grpc
from django.db import connection
from django_grpc_framework.settings import grpc_settings
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection, reflection_pb2

from grpc_api.contract import MAX_MESSAGE_BYTES, SERVICE_NAME
from grpc_api.interceptors import CallLogInterceptor, DatabaseConnectionInterceptor, TokenAuthInterceptor

logger = logging.getLogger(__name__)

SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING
# grpc.reflection.v1 is v1alpha under a new name, message for message: clients that ask for it
# first (grpcurl, Postman) are answered by the same servicer.
REFLECTION_V1 = "grpc.reflection.v1.ServerReflection"
# Calls admitted beyond the worker threads wait in a queue this many times as long; past it a call
# is refused at once with RESOURCE_EXHAUSTED rather than left to time out.
QUEUE_PER_WORKER = 2


class StoreHealth(threading.Thread):
    """Checks every `every` seconds that the relational store answers (every call needs it: it
    says who a meter is) and reports SERVING or NOT_SERVING accordingly, until stopped."""

    def __init__(self, health_servicer: health.HealthServicer, every: float):
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
    server: grpc.Server
    port: int
    health: health.HealthServicer
    calls: CallLogInterceptor
    workers: futures.ThreadPoolExecutor
    store_health: StoreHealth | None = field(default=None)

    def stop(self, grace: float | None = None) -> None:
        """Report NOT_SERVING, keep answering while calls in flight finish (within `grace`
        seconds, health checks answered NOT_SERVING all along), then stop."""
        if self.store_health is not None:
            self.store_health.stopping.set()
        self.health.enter_graceful_shutdown()
        began = time.monotonic()
        if grace:
            # Health checkers get a moment to see NOT_SERVING even when nothing is in flight.
            time.sleep(min(grace, 1.0))
            self.calls.wait_idle(max(grace - (time.monotonic() - began), 0))
        self.server.stop(max((grace or 0) - (time.monotonic() - began), 0)).wait()
        # The worker threads end, and with them the database connections they kept (collected
        # now rather than whenever: a database is not dropped while connections stay).
        self.workers.shutdown(wait=True)
        gc.collect()


def create_server(
    address: str,
    *,
    max_workers: int = 10,
    tokens: list[str] | None = None,
    tls: tuple[bytes, bytes] | None = None,
    health_check_seconds: float | None = None,
) -> RunningServer:
    """A started server on `address` ("127.0.0.1:0" picks a free port), with health and reflection.

    `tokens` turns on bearer-token authentication; `tls` is (private key PEM, certificate chain PEM).
    At most `max_workers` calls run at once and QUEUE_PER_WORKER times as many wait; more are
    refused with RESOURCE_EXHAUSTED. Health follows the relational store, checked every
    `health_check_seconds` (None: always SERVING until stopped).
    """
    calls = CallLogInterceptor()
    interceptors = [calls, DatabaseConnectionInterceptor()]
    if tokens:
        interceptors.append(TokenAuthInterceptor(tokens))
    workers = futures.ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix="grpc")
    server = grpc.server(
        workers,
        interceptors=interceptors,
        options=[
            ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
            ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
            ("grpc.so_reuseport", 0),
        ],
        maximum_concurrent_rpcs=max_workers * (1 + QUEUE_PER_WORKER),
    )
    grpc_settings.ROOT_HANDLERS_HOOK(server)
    health_servicer = health.HealthServicer(experimental_non_blocking=True)
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
    server.start()
    for service in ("", SERVICE_NAME):
        health_servicer.set(service, SERVING)
    store_health = None
    if health_check_seconds:
        store_health = StoreHealth(health_servicer, health_check_seconds)
        store_health.start()
    return RunningServer(server, port, health_servicer, calls, workers, store_health)


def _add_reflection_v1(server: grpc.Server, services: list[str]) -> None:
    servicer = reflection.ReflectionServicer(services)
    handler = grpc.stream_stream_rpc_method_handler(
        servicer.ServerReflectionInfo,
        request_deserializer=reflection_pb2.ServerReflectionRequest.FromString,
        response_serializer=reflection_pb2.ServerReflectionResponse.SerializeToString,
    )
    server.add_generic_rpc_handlers(
        [grpc.method_handlers_generic_handler(REFLECTION_V1, {"ServerReflectionInfo": handler})]
    )
