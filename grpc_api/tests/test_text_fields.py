"""A NUL character in any string field of any RPC is INVALID_ARGUMENT naming the field, on every
store (PostgreSQL refuses it in text, which once made it look like a store outage)."""
import grpc
import pytest
from google.protobuf.descriptor import FieldDescriptor
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from grpc_api.contract import SERVICE
from grpc_api.gen.meterusage.v1 import meter_usage_pb2 as pb
from testing.helpers import WRITER

NUL_TEXT = "gen\x00a"


def string_paths(descriptor, prefix: str = "") -> list[tuple[str, ...]]:
    """Every string field a request can carry, as the path to it (repeated fields at index 0)."""
    paths = []
    for field in descriptor.fields:
        repeated = field.is_repeated
        step = (f"{field.name}[]" if repeated else field.name,)
        if field.type == FieldDescriptor.TYPE_STRING:
            paths.append(step)
        elif field.type == FieldDescriptor.TYPE_MESSAGE:
            paths += [step + below for below in string_paths(field.message_type)]
    return paths


def request_with(method, path: tuple[str, ...]):
    """A request of `method` whose string field at `path` holds NUL_TEXT."""
    request = getattr(pb, method.input_type.name)()
    message = request
    for step in path[:-1]:
        message = getattr(message, step[:-2]).add() if step.endswith("[]") else getattr(message, step)
    last = path[-1]
    if last.endswith("[]"):
        getattr(message, last[:-2]).append(NUL_TEXT)
    else:
        setattr(message, last, NUL_TEXT)
    return request


def field_name(path: tuple[str, ...]) -> str:
    return ".".join(step.replace("[]", "[0]") for step in path)


CASES = [(method, path) for method in SERVICE.methods for path in string_paths(method.input_type)]


def test_every_rpc_with_text_is_covered():
    assert {method.name for method, _path in CASES} == {m.name for m in SERVICE.methods}
    assert ("ListMeters", "search") in {(m.name, field_name(p)) for m, p in CASES}
    assert ("WriteReadings", "readings[0].meter") in {(m.name, field_name(p)) for m, p in CASES}


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize(("method", "path"), CASES, ids=[f"{m.name}.{field_name(p)}" for m, p in CASES])
def test_a_nul_character_is_refused_naming_its_field(write_server, method, path):
    call = getattr(write_server.stub, method.name)
    with pytest.raises(grpc.RpcError) as raised:
        answer = call(request_with(method, path), timeout=10, metadata=WRITER)
        if method.server_streaming:
            next(iter(answer))

    error = raised.value
    assert error.code() is grpc.StatusCode.INVALID_ARGUMENT, error.details()
    details = rpc_status.from_call(error).details
    bad_request = error_details_pb2.BadRequest()
    assert details and details[0].Unpack(bad_request)
    assert [(v.field, v.description) for v in bad_request.field_violations] == [
        (field_name(path), "holds a NUL character at position 3")
    ]
