"""Building the gRPC server: the meterusage service, health, reflection, auth and call logs."""
import hmac
import logging
import time
from concurrent import futures
from dataclasses import dataclass

import grpc
from django_grpc_framework.settings import grpc_settings
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from grpc_api.gen.meterusage.v1 import meter_usage_pb2

logger = logging.getLogger("grpc_api.calls")

SERVICE_NAME = meter_usage_pb2.DESCRIPTOR.services_by_name["MeterUsageService"].full_name
HEALTH_METHOD_PREFIX = f"/{health.SERVICE_NAME}/"
# Messages of up to 16 MiB: a full page of readings or a year of 15-minute buckets fits easily.
MAX_MESSAGE_BYTES = 16 * 1024 * 1024


class CallLogInterceptor(grpc.ServerInterceptor):
    """Logs one line per call: method, status code and duration."""

    def intercept_service(self, continuation, handler_call_details):
        handler = continuation(handler_call_details)
        if handler is None:
            return None
        method = handler_call_details.method
        if handler.unary_unary:
            return handler._replace(unary_unary=_logged_unary(handler.unary_unary, method))
        if handler.unary_stream:
            return handler._replace(unary_stream=_logged_stream(handler.unary_stream, method))
        return handler


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
    interceptors = [CallLogInterceptor()]
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
