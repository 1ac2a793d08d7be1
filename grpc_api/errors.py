"""One place that turns what the read API raises into canonical gRPC status codes.

Every servicer method goes through `grpc_errors`, so no input can end a call as UNKNOWN.
"""
import functools
import inspect
import logging
import math

import grpc
from django.db import DatabaseError
from google.protobuf import any_pb2, duration_pb2
from google.rpc import code_pb2, error_details_pb2, status_pb2
from grpc_status import rpc_status

from grpc_api import convert
from grpc_api.contract import ERROR_DOMAIN, STORE_UNAVAILABLE, VIOLATIONS_CUT
from accounts.access import NotPermitted, NotSignedIn
from grpc_api.rpc_metrics import STORE_ERRORS
from readings.domain import DESCRIPTION_CHARACTERS, InvalidArgument, MeterNotFound, SourceUnavailable, cut_short
from readings.writes.changes import ChangesPruned
from readings.writes.live import RowsInvalid

logger = logging.getLogger(__name__)


def _status(code: int, message: str, *detail_messages, metadata: tuple = ()) -> grpc.Status:
    details = []
    for detail_message in detail_messages:
        detail = any_pb2.Any()
        detail.Pack(detail_message)
        details.append(detail)
    message = cut_short(message, MESSAGE_CHARACTERS)
    status = rpc_status.to_status(status_pb2.Status(code=code, message=message, details=details))
    return status._replace(trailing_metadata=(*status.trailing_metadata, *metadata))


# What one refusal carries, well within gRPC's 16 KiB of trailing metadata: the first violations
# (each cut short) and how many there were in all.
VIOLATIONS_SENT = 20
VIOLATIONS_IN_MESSAGE = 5
MESSAGE_CHARACTERS = 2000
FIELD_CHARACTERS = 80


def _invalid(error: InvalidArgument) -> grpc.Status:
    every, count = error.violations, error.count
    sent = [
        error_details_pb2.BadRequest.FieldViolation(
            field=cut_short(v.field, FIELD_CHARACTERS), description=cut_short(v.description, DESCRIPTION_CHARACTERS),
        )
        for v in every[:VIOLATIONS_SENT]
    ]
    message = "; ".join(f"{v.field}: {v.description}" for v in sent[:VIOLATIONS_IN_MESSAGE])
    if count > VIOLATIONS_IN_MESSAGE:
        message += f"; and {count - VIOLATIONS_IN_MESSAGE} more"
    details = [error_details_pb2.BadRequest(field_violations=sent)]
    if isinstance(error, RowsInvalid):
        details.append(convert.refused_readings(error, VIOLATIONS_SENT))
    if count > len(sent):
        details.append(error_details_pb2.ErrorInfo(
            reason=VIOLATIONS_CUT, domain=ERROR_DOMAIN, metadata={"violation_count": str(count)},
        ))
    return _status(code_pb2.INVALID_ARGUMENT, message, *details)


def _store_unavailable(store: str) -> grpc.Status:
    STORE_ERRORS.labels(store).inc()
    info = error_details_pb2.ErrorInfo(reason=STORE_UNAVAILABLE, domain=ERROR_DOMAIN, metadata={"store": store})
    # Another server would ask the same store: a negative pushback tells clients' retry policy
    # (gRFC A6) not to try again at once.
    return _status(
        code_pb2.UNAVAILABLE, f"{store} is unavailable; try again later", info,
        metadata=(("grpc-retry-pushback-ms", "-1"),),
    )


# How long a client refused for want of capacity should wait: about the time the admitted calls
# ahead of it take to be answered at capacity.
BUSY_RETRY_MS = 100


def retry_later(message: str, seconds: float) -> grpc.Status:
    """RESOURCE_EXHAUSTED with when to try again (RetryInfo, and the pushback gRPC's own retry
    policy reads, gRFC A6)."""
    milliseconds = max(1, math.ceil(seconds * 1000))
    delay = duration_pb2.Duration()
    delay.FromMilliseconds(milliseconds)
    return _status(
        code_pb2.RESOURCE_EXHAUSTED, message, error_details_pb2.RetryInfo(retry_delay=delay),
        metadata=(("grpc-retry-pushback-ms", str(milliseconds)),),
    )


def busy() -> grpc.Status:
    """RESOURCE_EXHAUSTED for a call the server has no room for now."""
    return retry_later("the server is busy; try again later", BUSY_RETRY_MS / 1000)


def status_for(error: Exception) -> grpc.Status:
    """The status that `error` stands for (sync and async handlers both abort with it)."""
    if isinstance(error, InvalidArgument):
        return _invalid(error)
    if isinstance(error, MeterNotFound):
        return _status(code_pb2.NOT_FOUND, str(error))
    if isinstance(error, NotSignedIn):
        return _status(code_pb2.UNAUTHENTICATED, str(error))
    if isinstance(error, NotPermitted):
        return _status(code_pb2.PERMISSION_DENIED, str(error))
    if isinstance(error, ChangesPruned):
        return _status(code_pb2.OUT_OF_RANGE, str(error))
    # Where a store lives (its URL, host, files) goes to the log, not to clients.
    if isinstance(error, SourceUnavailable):
        logger.warning("unavailable: %s", error)
        return _store_unavailable(error.store)
    if isinstance(error, DatabaseError):
        logger.warning("relational store unavailable: %s", error)
        return _store_unavailable("the relational store")
    logger.error("unexpected error", exc_info=error)
    return _status(code_pb2.INTERNAL, f"internal error ({type(error).__name__})")


def abort_for(context: grpc.ServicerContext, error: Exception):
    """Abort the call with the status that `error` stands for."""
    context.abort_with_status(status_for(error))


def grpc_errors(method):
    """Map exceptions of a servicer method (unary or server-streaming) to gRPC statuses."""
    if inspect.isgeneratorfunction(method):

        @functools.wraps(method)
        def streaming(self, request, context):
            try:
                yield from method(self, request, context)
            except grpc.RpcError:
                raise
            except Exception as error:  # noqa: BLE001  (every error gets a canonical status)
                abort_for(context, error)

        return streaming

    @functools.wraps(method)
    def unary(self, request, context):
        try:
            return method(self, request, context)
        except grpc.RpcError:
            raise
        except Exception as error:  # noqa: BLE001
            abort_for(context, error)

    return unary
