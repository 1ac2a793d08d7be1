"""The web tier's client of meterusage.v1: one channel per process, a deadline on every call,
each call made as the caller it serves, and failed calls raised as RpcFailed with their code and
field violations.

A call carries the credential of the request it serves (`calling_as`, set by the API's views):
the caller's own API key or access token, or for a signed-in user or an anonymous visitor the
short-lived credential the web tier signs (accounts/access.py). The service decides what each
caller sees. The web tier's own token (GRPC_TOKEN) goes only with its own calls (health checks).

Settings: GRPC_TARGET, GRPC_TOKEN, GRPC_TLS_ROOT_CERT (CA certificate file; set, the channel uses
TLS) and GRPC_DEADLINE_SECONDS.
"""
import contextvars
import ipaddress
import json
import logging
import os
import threading
from dataclasses import dataclass, field

import grpc
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from google.rpc import error_details_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_status import rpc_status

from grpc_api.contract import (
    ERROR_DOMAIN,
    MAX_MESSAGE_BYTES,
    SERVICE_NAME,
    STORE_UNAVAILABLE,
    VIOLATIONS_CUT,
)
from grpc_api.gen.meterusage.v1 import meter_usage_pb2 as pb
from grpc_api.gen.meterusage.v1 import meter_usage_pb2_grpc
from readings.domain import FieldViolation

logger = logging.getLogger(__name__)

# Calls are spread over every address the target resolves to, and a call that finds a server
# unavailable (it stopped, it is being replaced) is tried again on another, twice at most.
SERVICE_CONFIG = {
    "loadBalancingConfig": [{"round_robin": {}}],
    "methodConfig": [{
        "name": [{"service": SERVICE_NAME}],
        "retryPolicy": {
            "maxAttempts": 3,
            "initialBackoff": "0.05s",
            "maxBackoff": "0.5s",
            "backoffMultiplier": 2,
            "retryableStatusCodes": ["UNAVAILABLE"],
        },
    }],
}
CHANNEL_OPTIONS = [
    ("grpc.service_config", json.dumps(SERVICE_CONFIG)),
    ("grpc.enable_retries", 1),
    ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
    # A restarted server is reached again within seconds, not after gRPC's default two-minute
    # backoff. (grpc.min_reconnect_backoff_ms would also cut the 20 s connection timeout.)
    ("grpc.initial_reconnect_backoff_ms", 250),
    ("grpc.max_reconnect_backoff_ms", 2000),
]
# Readiness probes must answer fast even when the deadline of data calls is long.
HEALTH_DEADLINE_SECONDS = 2.0


@dataclass(eq=False)
class RpcFailed(Exception):
    """A call that ended with a status other than OK: its code, what it said, and the fields it
    named (google.rpc.BadRequest) when the request was INVALID_ARGUMENT."""

    code: grpc.StatusCode
    detail: str
    violations: list[FieldViolation] = field(default_factory=list)
    # How many violations the service found: more than `violations` when it sent the first only.
    violation_count: int = 0
    # A write refused for its readings: the first of them, in types (meterusage.v1.RefusedReading).
    refused: list = field(default_factory=list)

    def __str__(self) -> str:
        return f"{self.code.name}: {self.detail}"


def rpc_failed(error: grpc.RpcError) -> RpcFailed:
    code = error.code()
    detail = error.details() or code.name
    details = _status_details(error)
    if code is grpc.StatusCode.DEADLINE_EXCEEDED:
        detail = f"the gRPC service did not answer within {settings.GRPC_DEADLINE_SECONDS:g} s"
    elif code is grpc.StatusCode.UNAVAILABLE and not any(_is_store_unavailable(d) for d in details):
        # gRPC's own text names the addresses it tried: the log keeps it, clients get less.
        logger.warning("the gRPC service is unavailable: %s", detail)
        detail = "the gRPC service is unavailable"
    violations, count, refused = [], 0, []
    if code is grpc.StatusCode.INVALID_ARGUMENT:
        for each in details:
            bad_request, info, readings = error_details_pb2.BadRequest(), error_details_pb2.ErrorInfo(), pb.RefusedReadings()
            if each.Unpack(bad_request):
                violations += [FieldViolation(v.field, v.description) for v in bad_request.field_violations]
            elif each.Unpack(info) and info.reason == VIOLATIONS_CUT and info.domain == ERROR_DOMAIN:
                count = int(info.metadata.get("violation_count", "0") or 0)
            elif each.Unpack(readings):
                refused = list(readings.readings)
    return RpcFailed(code, detail, violations, max(count, len(violations)), refused)


def _status_details(error: grpc.RpcError) -> list:
    """The google.rpc.Status details of a failed call (Any messages)."""
    try:
        status = rpc_status.from_call(error)
    except ValueError:  # status details that disagree with the call's code
        return []
    return list(status.details) if status else []


def _is_store_unavailable(detail) -> bool:
    info = error_details_pb2.ErrorInfo()
    return detail.Unpack(info) and info.reason == STORE_UNAVAILABLE and info.domain == ERROR_DOMAIN


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


def channel_target(target: str) -> str:
    """gRPC's target for GRPC_TARGET: "host:port" (a name may resolve to several addresses, all
    used), or several "address:port" separated by commas (IP addresses: gRPC resolves a list of
    names no other way)."""
    servers = [part.strip() for part in target.split(",") if part.strip()]
    if len(servers) < 2:
        return target.strip()
    hosts = [server.rpartition(":")[0].strip("[]") for server in servers]
    try:
        versions = {ipaddress.ip_address(host).version for host in hosts}
    except ValueError:
        raise ImproperlyConfigured(
            f"GRPC_TARGET {target!r}: a list must give IP addresses (a DNS name with several "
            "addresses does the same for names)"
        ) from None
    if len(versions) > 1:
        raise ImproperlyConfigured(f"GRPC_TARGET {target!r}: a list is all IPv4 or all IPv6")
    return f"ipv{versions.pop()}:" + ",".join(servers)


def _connect(config: _Config) -> _Connection:
    target = channel_target(config.target)
    if config.root_cert:
        with open(config.root_cert, "rb") as pem:
            credentials = grpc.ssl_channel_credentials(root_certificates=pem.read())
        channel = grpc.secure_channel(target, credentials, options=CHANNEL_OPTIONS)
    else:
        channel = grpc.insecure_channel(target, options=CHANNEL_OPTIONS)
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


# The credential of the caller the current request serves; none: an anonymous caller.
caller_credential: contextvars.ContextVar[str | None] = contextvars.ContextVar("caller_credential", default=None)


def _metadata(token: str | None) -> tuple:
    credential = caller_credential.get() if token is None else token
    return (("authorization", f"Bearer {credential}"),) if credential else ()


def call(method: str, request, *, token: str | None = None):
    """Call `method` of MeterUsageService with the deadline, as the current caller (or with
    `token`); a failure raises RpcFailed."""
    current = connection()
    try:
        return getattr(current.stub, method)(
            request, timeout=settings.GRPC_DEADLINE_SECONDS, metadata=_metadata(token)
        )
    except grpc.RpcError as error:
        raise rpc_failed(error) from None


def stream(method: str, request, *, token: str | None = None):
    """The messages of a server-streaming `method`, under one deadline for the whole stream;
    a failure raises RpcFailed. Leaving the loop early cancels the call."""
    current = connection()
    call_ = getattr(current.stub, method)(
        request, timeout=settings.GRPC_DEADLINE_SECONDS, metadata=_metadata(token)
    )
    try:
        yield from call_
    except grpc.RpcError as error:
        raise rpc_failed(error) from None
    finally:
        call_.cancel()


def service_status() -> str:
    """The gRPC health status of MeterUsageService ("SERVING", "NOT_SERVING", ...).

    An unreachable server raises RpcFailed.
    """
    current = connection()
    try:
        response = current.health.Check(
            health_pb2.HealthCheckRequest(service=SERVICE_NAME),
            timeout=min(HEALTH_DEADLINE_SECONDS, settings.GRPC_DEADLINE_SECONDS),
            metadata=current.metadata,
        )
    except grpc.RpcError as error:
        raise rpc_failed(error) from None
    return health_pb2.HealthCheckResponse.ServingStatus.Name(response.status)
