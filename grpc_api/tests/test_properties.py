"""Every RPC driven with random fields through a real server answers OK or a canonical error code,
never UNKNOWN or INTERNAL, whatever the fields hold."""
import os

import grpc
import pytest
from google.protobuf.timestamp_pb2 import Timestamp
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from grpc_api.gen.meterusage.v1 import meter_usage_pb2 as pb

pytestmark = [pytest.mark.django_db, pytest.mark.store]

# No token is asked for, the server is never past its capacity and no call nears its deadline:
# nothing else may answer a request of one caller.
CANONICAL = {grpc.StatusCode.OK, grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.NOT_FOUND}
# Meters whose store cannot answer: UNAVAILABLE is their documented answer.
DOWN = {"lost", "orphan"}
INT32 = st.integers(-(2**31), 2**31 - 1)
# Meters of every source (the "lost" and "orphan" ones have no store), and anything else.
meters = st.one_of(
    st.sampled_from(["meterusage", "meterusage-csv", "meterusage-influx", "gen-a", "gen-b-csv", "lost", "orphan", "nope"]),
    st.text(max_size=120),
)
timestamps = st.one_of(
    st.none(),
    st.builds(Timestamp, seconds=st.integers(-(2**62), 2**62), nanos=INT32),
    # The reference month and its neighbourhood, where readings are.
    st.builds(Timestamp, seconds=st.integers(1546000000, 1549500000), nanos=st.integers(0, 999_999_999)),
    # The ends of the span served, and of what InfluxDB stores.
    st.builds(Timestamp, seconds=st.sampled_from([-62135596800, -62135510400, -9223372036, 9223372036,
                                                  253402214400, 253402300799]), nanos=st.integers(0, 999_999_999)),
)
zones = st.one_of(st.sampled_from(["", "UTC", "Europe/Amsterdam", "Asia/Tokyo", "Pacific/Kiritimati",
                                   "America/St_Johns", "Asia/Kathmandu", "Europe"]), st.text(max_size=70))
tokens = st.one_of(st.just(""), st.text(max_size=200))


@pytest.fixture(scope="module", autouse=True)
def every_store(influx_meters):
    """InfluxDB meters too (module-scoped: seeded before, not inside, a test's transaction)."""


def in_range(request, **fields):
    start, end = fields.pop("start_time"), fields.pop("end_time")
    message = request(**fields)
    if start is not None:
        message.start_time.CopyFrom(start)
    if end is not None:
        message.end_time.CopyFrom(end)
    return message


def allowed(meter: str) -> set[grpc.StatusCode]:
    return CANONICAL | {grpc.StatusCode.UNAVAILABLE} if meter in DOWN else CANONICAL


def outcome(call) -> grpc.StatusCode:
    try:
        result = call()
        if hasattr(result, "__iter__") and not hasattr(result, "ListFields"):
            for _ in result:
                pass
        return grpc.StatusCode.OK
    except grpc.RpcError as error:
        return error.code()


PROPERTY = settings(max_examples=int(os.environ.get("PROPERTY_EXAMPLES", "150")), deadline=None, suppress_health_check=list(HealthCheck), database=None)


# The RPCs over a range of time, with the fields of each one's own that random values fill.
RANGE_RPCS = {
    "ListReadings": (pb.ListReadingsRequest, {"page_size": INT32, "page_token": tokens}),
    "StreamReadings": (pb.StreamReadingsRequest, {"batch_size": INT32, "resume_token": tokens}),
    "AggregateReadings": (pb.AggregateReadingsRequest, {"window": INT32, "time_zone": zones}),
    "GetCompleteness": (pb.GetCompletenessRequest, {}),
}


@pytest.mark.parametrize("rpc", RANGE_RPCS)
@PROPERTY
@given(meter=meters, start=timestamps, end=timestamps, data=st.data())
def test_range_rpcs(stub, rpc, meter, start, end, data):
    request_type, own_fields = RANGE_RPCS[rpc]
    fields = data.draw(st.fixed_dictionaries(own_fields), label="fields")
    request = in_range(request_type, meter=meter, start_time=start, end_time=end, **fields)
    assert outcome(lambda: getattr(stub, rpc)(request, timeout=30)) in allowed(meter)


@PROPERTY
@given(
    size=INT32, token=tokens, skip=INT32, order=st.one_of(st.sampled_from(["", "reading_count desc", "name asc"]), st.text(max_size=40)),
    search=st.text(max_size=30), source=st.text(max_size=20), zone=zones, unit=st.text(max_size=20),
    has_readings=st.one_of(st.none(), st.booleans()),
)
def test_list_meters(stub, size, token, skip, order, search, source, zone, unit, has_readings):
    request = pb.ListMetersRequest(page_size=size, page_token=token, skip=skip, order_by=order, search=search,
                                   source=source, time_zone=zone, unit=unit)
    if has_readings is not None:
        request.has_readings = has_readings
    assert outcome(lambda: stub.ListMeters(request, timeout=30)) in CANONICAL


@PROPERTY
@given(name=meters)
def test_get_meter(stub, name):
    assert outcome(lambda: stub.GetMeter(pb.GetMeterRequest(name=name), timeout=30)) in allowed(name)
