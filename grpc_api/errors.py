"""One place that turns what the read API raises into canonical gRPC status codes.

Every servicer method goes through `grpc_errors`, so no input can end a call as UNKNOWN.
"""
import functools
import inspect
import logging

import grpc
from django.db import DatabaseError
from google.protobuf import any_pb2
from google.rpc import code_pb2, error_details_pb2, status_pb2
from grpc_status import rpc_status

from grpc_api.contract import ERROR_DOMAIN, STORE_UNAVAILABLE
from grpc_api.metrics import STORE_ERRORS
from grpc_api.permissions import NotAllowed
from readings.domain import InvalidArgument, MeterNotFound, SourceUnavailable

logger = logging.getLogger(__name__)


def _abort_with_detail(
    context: grpc.ServicerContext, code: int, message: str, detail_message, metadata: tuple = ()
) -> None:
    detail = any_pb2.Any()
    detail.Pack(detail_message)
    status = rpc_status.to_status(status_pb2.Status(code=code, message=message, details=[detail]))
    context.abort_with_status(status._replace(trailing_metadata=(*status.trailing_metadata, *metadata)))


def _abort_invalid(context: grpc.ServicerContext, error: InvalidArgument):
    violations = [
        error_details_pb2.BadRequest.FieldViolation(field=v.field, description=v.description) for v in error.violations
    ]
    _abort_with_detail(context, code_pb2.INVALID_ARGUMENT, str(error), error_details_pb2.BadRequest(field_violations=violations))


def _abort_store_unavailable(context: grpc.ServicerContext, store: str):
    info = error_details_pb2.ErrorInfo(reason=STORE_UNAVAILABLE, domain=ERROR_DOMAIN, metadata={"store": store})
    # Another server would ask the same store: a negative pushback tells clients' retry policy
    # (gRFC A6) not to try again at once.
    _abort_with_detail(
        context, code_pb2.UNAVAILABLE, f"{store} is unavailable; try again later", info,
        metadata=(("grpc-retry-pushback-ms", "-1"),),
    )


def abort_for(context: grpc.ServicerContext, error: Exception):
    """Abort the call with the status that `error` stands for."""
    if isinstance(error, InvalidArgument):
        _abort_invalid(context, error)
    if isinstance(error, MeterNotFound):
        context.abort(grpc.StatusCode.NOT_FOUND, str(error))
    if isinstance(error, NotAllowed):
        context.abort(error.code, str(error))
    # Where a store lives (its URL, host, files) goes to the log, not to clients.
    if isinstance(error, SourceUnavailable):
        logger.warning("unavailable: %s", error)
        STORE_ERRORS.labels(error.store).inc()
        _abort_store_unavailable(context, error.store)
    if isinstance(error, DatabaseError):
        logger.warning("relational store unavailable: %s", error)
        STORE_ERRORS.labels("the relational store").inc()
        _abort_store_unavailable(context, "the relational store")
    logger.exception("unexpected error in %s", context, exc_info=error)
    context.abort(grpc.StatusCode.INTERNAL, f"internal error ({type(error).__name__})")


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
