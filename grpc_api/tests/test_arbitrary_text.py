"""Arbitrary text in every string field of every RPC (NUL, astral and right-to-left characters,
combining marks, 100,000-character strings, JSON nested thousands deep) gets a canonical answer
through a real server: OK, INVALID_ARGUMENT, NOT_FOUND, UNAUTHENTICATED or PERMISSION_DENIED,
with error details that stay small and quote the input in short.

The fields come from the service's descriptor, walked recursively (repeated and nested messages
included): a new RPC or string field is covered without editing this file.
"""
import os

import grpc
import pytest
from google.protobuf import message_factory
from google.protobuf.descriptor import FieldDescriptor
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from grpc_api.gen.meterusage.v1 import meter_usage_pb2 as pb
from testing.arbitrary import arbitrary_texts, deep_json
from testing.helpers import JANUARY, WRITER, write_readings

# Transactional: the server writes with its own connections (see test_write_readings.py).
pytestmark = pytest.mark.django_db(transaction=True)

SERVICE = pb.DESCRIPTOR.services_by_name["MeterUsageService"]
CANONICAL = {
    grpc.StatusCode.OK, grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.NOT_FOUND,
    grpc.StatusCode.UNAUTHENTICATED, grpc.StatusCode.PERMISSION_DENIED,
}
# An error's trailing metadata (its message and every detail) stays well within gRPC's 16 KiB
# of headers, however long the text it refuses; input is quoted by its first few dozen characters.
TRAILERS_BYTES = 4096
QUOTED_CHARACTERS = 200


texts = arbitrary_texts(
    "meter\x00", "\U000E0001", "\u202Emeter\u202C", "' OR 1=1 --", "\\", "*",
)


def string_paths(descriptor, prefix: tuple = (), seen: frozenset = frozenset()) -> list[tuple]:
    """Every string field below a message type, as the path of fields that leads to it."""
    found = []
    for field in descriptor.fields:
        path = (*prefix, field)
        if field.type == FieldDescriptor.TYPE_STRING:
            found.append(path)
        elif field.type == FieldDescriptor.TYPE_MESSAGE and field.message_type.full_name not in seen:
            found += string_paths(field.message_type, path, seen | {descriptor.full_name})
    return found


def path_name(path: tuple) -> str:
    return ".".join(f"{field.name}[]" if field.is_repeated else field.name for field in path)


def with_text(request, path: tuple, text: str):
    """A copy of `request` with `text` in the field at `path` (the first item of a repeated one)."""
    request = type(request).FromString(request.SerializeToString())
    message = request
    for field in path[:-1]:
        if field.is_repeated:
            items = getattr(message, field.name)
            message = items[0] if items else items.add()
        else:
            message = getattr(message, field.name)
    leaf = path[-1]
    if leaf.is_repeated:
        items = getattr(message, leaf.name)
        if items:
            items[0] = text
        else:
            items.append(text)
    else:
        setattr(message, leaf.name, text)
    return request


def valid_requests(meter: str) -> dict[str, list]:
    """Requests of each RPC that are answered with OK, to put text into one field at a time. An
    RPC not named here starts from its empty request."""
    return {
        "GetMeter": [pb.GetMeterRequest(name=meter)],
        "ListMeters": [pb.ListMetersRequest(page_size=5)],
        "ListReadings": [pb.ListReadingsRequest(meter=meter, **JANUARY)],
        "StreamReadings": [pb.StreamReadingsRequest(meter=meter, **JANUARY)],
        "AggregateReadings": [pb.AggregateReadingsRequest(meter=meter, window=pb.WINDOW_DAY, time_zone="UTC", **JANUARY)],
        "GetCompleteness": [pb.GetCompletenessRequest(meter=meter, **JANUARY)],
        "WriteReadings": [pb.WriteReadingsRequest(readings=[pb.ReadingInput(meter=meter, local_time="2019-01-02 00:00:00", value=2.5)])],
        # One that ends once caught up, and one that would go on (cancelled after its first message).
        "WatchReadings": [pb.WatchReadingsRequest(meters=[meter], catch_up_only=True), pb.WatchReadingsRequest(meters=[meter])],
    }


def endless(request) -> bool:
    """Whether a request asks for a stream that does not end by itself (a watch that goes on)."""
    return isinstance(request, pb.WatchReadingsRequest) and not request.catch_up_only


CASES = [(method, path) for method in SERVICE.methods for path in string_paths(method.input_type)]


def test_every_rpc_has_its_string_fields_walked():
    named = {(method.name, path_name(path)) for method, path in CASES}

    assert {m.name for m in SERVICE.methods} <= {name for name, _ in named}
    assert {
        ("WriteReadings", "readings[].meter"), ("WriteReadings", "readings[].local_time"),
        ("WriteReadings", "readings[].wall_time.time_zone.id"), ("WriteReadings", "row_unit"),
        ("WatchReadings", "meters[]"), ("WatchReadings", "resume_token"), ("ListMeters", "page_token"),
        ("ListMeters", "search"), ("StreamReadings", "resume_token"), ("AggregateReadings", "time_zone"),
    } <= named


@pytest.fixture
def meter(write_server, new_meter):
    """A meter of the write server with a few readings."""
    name = new_meter("Europe/Amsterdam")
    write_readings(write_server.stub, name, ("2019-01-01 00:15:00", 1.0), ("2019-01-01 00:30:00", 2.0))
    return name


def call_outcome(channel, method, request) -> tuple[grpc.StatusCode, str, tuple]:
    """The status a call ends with, its details and trailing metadata. A stream is read to its
    end, or, when it would not end, cancelled here after its first message: that is OK (the
    server's status is then no longer the question)."""
    path = f"/{SERVICE.full_name}/{method.name}"
    response_class = message_factory.GetMessageClass(method.output_type)
    kind = channel.unary_stream if method.server_streaming else channel.unary_unary
    call = kind(path, request_serializer=type(request).SerializeToString, response_deserializer=response_class.FromString)
    try:
        if not method.server_streaming:
            call(request, metadata=WRITER, timeout=60)
            return grpc.StatusCode.OK, "", ()
        stream = call(request, metadata=WRITER, timeout=60)
        for _ in stream:
            if endless(request):
                stream.cancel()
                break
        return grpc.StatusCode.OK, "", ()
    except grpc.RpcError as error:
        return error.code(), error.details() or "", tuple(error.trailing_metadata() or ())


def metadata_bytes(metadata: tuple) -> int:
    return sum(len(key) + len(value if isinstance(value, bytes) else value.encode()) for key, value in metadata)


@pytest.mark.parametrize(("method", "path"), CASES, ids=[f"{m.name}-{path_name(p)}" for m, p in CASES])
@settings(max_examples=int(os.environ.get("PROPERTY_EXAMPLES", "25")), deadline=None, database=None, suppress_health_check=list(HealthCheck))
@given(text=texts, which=st.integers(0, 1))
@example(text="\x00", which=0)
@example(text="\U0001F600" * 100_000, which=0)
@example(text="x" * 100_000, which=1)
@example(text=deep_json(5000, "list"), which=1)
def test_any_text_in_any_string_field_gets_a_canonical_answer(write_server, meter, method, path, text, which):
    bases = valid_requests(meter).get(method.name) or [message_factory.GetMessageClass(method.input_type)()]
    request = with_text(bases[which % len(bases)], path, text)

    code, details, trailers = call_outcome(write_server.channel, method, request)

    assert code in CANONICAL, (path_name(path), text[:80], code, details[:300])
    assert metadata_bytes(trailers) < TRAILERS_BYTES, (path_name(path), text[:80], metadata_bytes(trailers))
    if len(text) > QUOTED_CHARACTERS:
        assert text[:QUOTED_CHARACTERS] not in details


def test_a_search_longer_than_any_name_is_invalid_argument(write_server, meter):
    # It was UNAVAILABLE on SQLite, which refuses a LIKE pattern of over 50,000 bytes.
    with pytest.raises(grpc.RpcError) as raised:
        write_server.stub.ListMeters(pb.ListMetersRequest(search="\U0001F600" * 20_000), timeout=10)

    assert raised.value.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert raised.value.details() == "search: is longer than 200 characters"
