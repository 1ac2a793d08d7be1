"""ROOT_HANDLERS_HOOK of django-grpc-framework: the services this project serves.

The method handlers are built from the contract, like the generated add_..._to_server, with one
difference: a servicer method may return the response already serialized (bytes), which is how
ListReadings sends readings written column-wise (grpc_api/encode.py); and WatchReadings is an
async generator served on the server's event loop (grpc_api/watch.py).
"""
import functools
import inspect

import grpc
from google.protobuf.message import DecodeError

from grpc_api.contract import SERVICE, SERVICE_NAME
from grpc_api.errors import status_for
from grpc_api.gen.meterusage.v1 import meter_usage_pb2
from grpc_api.servicers import MeterUsageService
from grpc_api.text_fields import nul_violations
from grpc_api.watch import watch_readings
from readings.domain import FieldViolation, InvalidArgument

# Methods served on the event loop rather than by the servicer on a worker thread.
ASYNC_METHODS = {"WatchReadings": watch_readings}

_KINDS = {
    (False, False): grpc.unary_unary_rpc_method_handler,
    (False, True): grpc.unary_stream_rpc_method_handler,
    (True, False): grpc.stream_unary_rpc_method_handler,
    (True, True): grpc.stream_stream_rpc_method_handler,
}


class Unreadable:
    """A request whose bytes do not parse as its message: refused as INVALID_ARGUMENT by
    `checked` (grpc would end the call UNKNOWN had the deserializer raised)."""

    def __init__(self, message_name: str):
        self.message_name = message_name


def _parser(request_class):
    def parse(data: bytes):
        try:
            return request_class.FromString(data)
        except DecodeError:
            return Unreadable(request_class.DESCRIPTOR.full_name)

    return parse


def _serialized(response) -> bytes:
    return response if isinstance(response, bytes) else response.SerializeToString()


def checked(behaviour):
    """`behaviour` behind the checks every request passes first (no NUL character in any text)."""

    def refusal(request):
        if isinstance(request, Unreadable):
            return status_for(InvalidArgument(FieldViolation("request", f"is not a {request.message_name} message")))
        violations = nul_violations(request)
        return status_for(InvalidArgument(*violations)) if violations else None

    if inspect.isasyncgenfunction(behaviour):

        @functools.wraps(behaviour)
        async def async_stream(request, context):
            if (status := refusal(request)) is not None:
                await context.abort(status.code, status.details, status.trailing_metadata)
            async for response in behaviour(request, context):
                yield response

        return async_stream

    # A server-streaming servicer method returns its generator: refused before it is made.
    @functools.wraps(behaviour)
    def on_worker_thread(request, context):
        if (status := refusal(request)) is not None:
            context.abort_with_status(status)
        return behaviour(request, context)

    return on_worker_thread


def method_handlers(servicer) -> dict:
    handlers = {}
    for method in SERVICE.methods:
        request_class = getattr(meter_usage_pb2, method.input_type.name)
        kind = _KINDS[(method.client_streaming, method.server_streaming)]
        handlers[method.name] = kind(
            checked(ASYNC_METHODS.get(method.name) or getattr(servicer, method.name)),
            request_deserializer=_parser(request_class),
            response_serializer=_serialized,
        )
    return handlers


def grpc_handlers(server):
    handlers = method_handlers(MeterUsageService.as_servicer())
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(SERVICE_NAME, handlers),))
    server.add_registered_method_handlers(SERVICE_NAME, handlers)
