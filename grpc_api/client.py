"""The web gateway's client of meterusage.v1: one channel per process, a deadline on every call,
and gRPC failures turned into HTTP statuses.

Settings: GRPC_TARGET, GRPC_TOKEN (bearer token to send), GRPC_TLS_ROOT_CERT (CA certificate file;
set, the channel uses TLS) and GRPC_DEADLINE_SECONDS.
"""
import os
import threading
from dataclasses import dataclass, field

import grpc
from django.conf import settings
from google.rpc import error_details_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_status import rpc_status

from grpc_api.gen.meterusage.v1 import meter_usage_pb2_grpc
from grpc_api.server import MAX_MESSAGE_BYTES, SERVICE_NAME

CHANNEL_OPTIONS = [
    ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
    # A restarted server is reached again within seconds, not after gRPC's default two-minute
    # backoff. (grpc.min_reconnect_backoff_ms would also cut the 20 s connection timeout.)
    ("grpc.initial_reconnect_backoff_ms", 250),
    ("grpc.max_reconnect_backoff_ms", 2000),
]
# Readiness probes must answer fast even when the deadline of data calls is long.
HEALTH_DEADLINE_SECONDS = 2.0

# After google.rpc.Code's HTTP mapping; failures of the upstream server itself are a bad gateway.
HTTP_STATUS = {
    grpc.StatusCode.INVALID_ARGUMENT: 400,
    grpc.StatusCode.FAILED_PRECONDITION: 400,
    grpc.StatusCode.OUT_OF_RANGE: 400,
    grpc.StatusCode.UNAUTHENTICATED: 401,
    grpc.StatusCode.PERMISSION_DENIED: 403,
    grpc.StatusCode.NOT_FOUND: 404,
    grpc.StatusCode.ALREADY_EXISTS: 409,
    grpc.StatusCode.ABORTED: 409,
    grpc.StatusCode.RESOURCE_EXHAUSTED: 429,
    grpc.StatusCode.UNAVAILABLE: 503,
    grpc.StatusCode.DEADLINE_EXCEEDED: 504,
}
BAD_GATEWAY = 502


@dataclass(frozen=True)
class FieldViolation:
    field: str
    description: str


@dataclass(eq=False)
class GatewayError(Exception):
    """A gRPC call that failed, with the HTTP status that stands for it."""

    http_status: int
    grpc_code: str
    detail: str
    violations: list[FieldViolation] = field(default_factory=list)

    def __str__(self) -> str:
        return f"{self.grpc_code}: {self.detail}"


def gateway_error(error: grpc.RpcError) -> GatewayError:
    """The HTTP view of a failed call: status, gRPC code, message and BadRequest field violations."""
    code = error.code()
    detail = error.details() or code.name
    if code is grpc.StatusCode.DEADLINE_EXCEEDED:
        detail = f"the gRPC service did not answer within {settings.GRPC_DEADLINE_SECONDS:g} s"
    elif code is grpc.StatusCode.UNAVAILABLE:
        detail = f"the gRPC service is unavailable: {detail}"
    return GatewayError(
        http_status=HTTP_STATUS.get(code, BAD_GATEWAY),
        grpc_code=code.name,
        detail=detail,
        violations=_field_violations(error) if code is grpc.StatusCode.INVALID_ARGUMENT else [],
    )


def _field_violations(error: grpc.RpcError) -> list[FieldViolation]:
    try:
        status = rpc_status.from_call(error)
    except ValueError:  # status details that disagree with the call's code
        return []
    violations = []
    for detail in status.details if status else ():
        bad_request = error_details_pb2.BadRequest()
        if detail.Unpack(bad_request):
            violations += [FieldViolation(v.field, v.description) for v in bad_request.field_violations]
    return violations


@dataclass(frozen=True)
class _Config:
    target: str
    root_cert: str
    token: str


@dataclass(frozen=True)
class _Connection:
    config: _Config
    pid: int
    channel: grpc.Channel
    stub: meter_usage_pb2_grpc.MeterUsageServiceStub
    health: health_pb2_grpc.HealthStub
    metadata: tuple


_lock = threading.Lock()
_connection: _Connection | None = None


def _config() -> _Config:
    return _Config(settings.GRPC_TARGET, settings.GRPC_TLS_ROOT_CERT, settings.GRPC_TOKEN)


def _connect(config: _Config) -> _Connection:
    if config.root_cert:
        with open(config.root_cert, "rb") as pem:
            credentials = grpc.ssl_channel_credentials(root_certificates=pem.read())
        channel = grpc.secure_channel(config.target, credentials, options=CHANNEL_OPTIONS)
    else:
        channel = grpc.insecure_channel(config.target, options=CHANNEL_OPTIONS)
    metadata = (("authorization", f"Bearer {config.token}"),) if config.token else ()
    return _Connection(
        config, os.getpid(), channel,
        meter_usage_pb2_grpc.MeterUsageServiceStub(channel), health_pb2_grpc.HealthStub(channel), metadata,
    )


def connection() -> _Connection:
    """This process's channel, made on first use: a gunicorn worker never shares its parent's.

    A changed setting (tests override GRPC_TARGET) replaces the channel.
    """
    global _connection
    config, pid = _config(), os.getpid()
    current = _connection
    if current is not None and current.pid == pid and current.config == config:
        return current
    with _lock:
        current = _connection
        if current is None or current.pid != pid or current.config != config:
            # A channel inherited through fork belongs to the parent: leave it alone.
            if current is not None and current.pid == pid:
                current.channel.close()
            _connection = current = _connect(config)
    return current


def call(method: str, request):
    """Call `method` of MeterUsageService with the deadline and token; a failure raises GatewayError."""
    current = connection()
    try:
        return getattr(current.stub, method)(
            request, timeout=settings.GRPC_DEADLINE_SECONDS, metadata=current.metadata
        )
    except grpc.RpcError as error:
        raise gateway_error(error) from None


def service_status() -> str:
    """The gRPC health status of MeterUsageService ("SERVING", "NOT_SERVING", ...).

    An unreachable server raises GatewayError.
    """
    current = connection()
    try:
        response = current.health.Check(
            health_pb2.HealthCheckRequest(service=SERVICE_NAME),
            timeout=min(HEALTH_DEADLINE_SECONDS, settings.GRPC_DEADLINE_SECONDS),
            metadata=current.metadata,
        )
    except grpc.RpcError as error:
        raise gateway_error(error) from None
    return health_pb2.HealthCheckResponse.ServingStatus.Name(response.status)
