"""Building the gRPC server: the meterusage service, health, reflection and the interceptors."""
from concurrent import futures
from dataclasses import dataclass

import grpc
from django_grpc_framework.settings import grpc_settings
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from grpc_api.contract import MAX_MESSAGE_BYTES, SERVICE_NAME
from grpc_api.interceptors import (
    CallLogInterceptor,
    DatabaseConnectionInterceptor,
    TokenAuthInterceptor,
)


@dataclass
class RunningServer:
    server: grpc.Server
    port: int
    health: health.HealthServicer

    def stop(self, grace: float | None = None) -> None:
        """Report NOT_SERVING to health checks, then stop, letting calls finish within `grace`."""
        self.health.enter_graceful_shutdown()
        self.server.stop(grace).wait()


def create_server(
    address: str,
    *,
    max_workers: int = 10,
    tokens: list[str] | None = None,
    tls: tuple[bytes, bytes] | None = None,
) -> RunningServer:
    """A started server on `address` ("127.0.0.1:0" picks a free port), with health and reflection.

    `tokens` turns on bearer-token authentication; `tls` is (private key PEM, certificate chain PEM).
    """
    interceptors = [CallLogInterceptor(), DatabaseConnectionInterceptor()]
    if tokens:
        interceptors.append(TokenAuthInterceptor(tokens))
    server = grpc.server(
        futures.ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix="grpc"),
        interceptors=interceptors,
        options=[
            ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
            ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
            ("grpc.so_reuseport", 0),
        ],
    )
    grpc_settings.ROOT_HANDLERS_HOOK(server)
    health_servicer = health.HealthServicer(experimental_non_blocking=True)
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    reflection.enable_server_reflection([SERVICE_NAME, health.SERVICE_NAME, reflection.SERVICE_NAME], server)
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
        health_servicer.set(service, health_pb2.HealthCheckResponse.SERVING)
    return RunningServer(server, port, health_servicer)
