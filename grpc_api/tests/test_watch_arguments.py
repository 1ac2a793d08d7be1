"""WatchReadings answers a start_time it cannot use as the other RPCs do: INVALID_ARGUMENT naming
the field (it was INTERNAL for times past the span served, and nanos out of range were taken)."""
import grpc
import pytest
from google.protobuf import timestamp_pb2

from grpc_api.gen.meterusage.v1 import meter_usage_pb2 as pb

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.mark.parametrize(
    ("seconds", "nanos", "description"),
    [
        (253402387200, 0, "must be from 0001-01-02 to 9999-12-30"),
        (2**63 - 1, 0, "must be from 0001-01-02 to 9999-12-30"),
        (-(2**63), 0, "must be from 0001-01-02 to 9999-12-30"),
        (-62135596801, 0, "must be from 0001-01-02 to 9999-12-30"),
        (1546300800, -1, "nanos must be from 0 to 999999999 (got -1)"),
        (1546300800, 2_000_000_000, "nanos must be from 0 to 999999999 (got 2000000000)"),
    ],
    ids=["after 9999", "int64 max", "int64 min", "before year 1", "nanos -1", "nanos 2e9"],
)
def test_a_start_time_out_of_range_is_invalid_argument(write_server, new_meter, seconds, nanos, description):
    request = pb.WatchReadingsRequest(
        meters=[new_meter()], start_time=timestamp_pb2.Timestamp(seconds=seconds, nanos=nanos), catch_up_only=True,
    )

    with pytest.raises(grpc.RpcError) as raised:
        list(write_server.stub.WatchReadings(request, timeout=10))

    assert raised.value.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert raised.value.details() == f"start_time: {description}"


def test_a_start_time_in_range_is_taken(write_server, new_meter):
    request = pb.WatchReadingsRequest(
        meters=[new_meter()], start_time=timestamp_pb2.Timestamp(seconds=1546300800, nanos=999_999_999),
        catch_up_only=True,
    )

    (message,) = list(write_server.stub.WatchReadings(request, timeout=10))

    assert message.caught_up and not message.changes


@pytest.mark.parametrize(
    ("name", "description"),
    [
        ("m" * 10_000, "is longer than 100 characters"),
        ("a b", "'a b' has characters other than"),
        ("", "is required"),
    ],
    ids=["10,000 characters", "a space", "empty"],
)
def test_a_name_no_meter_can_have_is_invalid_argument(write_server, new_meter, name, description):
    request = pb.WatchReadingsRequest(meters=[new_meter(), name], catch_up_only=True)

    with pytest.raises(grpc.RpcError) as raised:
        list(write_server.stub.WatchReadings(request, timeout=10))

    assert raised.value.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert raised.value.details().startswith(f"meters[1]: {description}")


def test_a_resume_token_of_another_deployments_store_is_refused(write_server, new_meter):
    from readings.models import StoreIdentity

    meter = new_meter()
    request = pb.WatchReadingsRequest(meters=[meter], catch_up_only=True)
    (message,) = list(write_server.stub.WatchReadings(request, timeout=10))
    resumed = pb.WatchReadingsRequest(meters=[meter], resume_token=message.resume_token, catch_up_only=True)
    assert list(write_server.stub.WatchReadings(resumed, timeout=10))  # taken by the store that made it

    ours = StoreIdentity.current()
    StoreIdentity.objects.update(key="another-deployments-store")  # the same token, shown to another store
    try:
        with pytest.raises(grpc.RpcError) as raised:
            list(write_server.stub.WatchReadings(resumed, timeout=10))
    finally:
        StoreIdentity.objects.update(key=ours)  # the table outlives each test's data

    assert raised.value.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert raised.value.details().startswith("resume_token: was issued by another deployment's store")
