"""A refusal fits in gRPC's trailers whatever the request held: the first violations, each cut
short, and how many there were (past 16 KiB the client got RESOURCE_EXHAUSTED instead)."""
import grpc
import pytest
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from grpc_api.contract import ERROR_DOMAIN, VIOLATIONS_CUT
from grpc_api.gen.meterusage.v1 import meter_usage_pb2 as pb
from testing.helpers import WRITER

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def writing(write_server):
    return lambda request: write_server.stub.WriteReadings(request, timeout=30, metadata=WRITER)


def refusal(call) -> tuple[grpc.RpcError, error_details_pb2.BadRequest, dict]:
    with pytest.raises(grpc.RpcError) as raised:
        call()
    error = raised.value
    bad_request, info = error_details_pb2.BadRequest(), error_details_pb2.ErrorInfo()
    infos = {}
    for detail in rpc_status.from_call(error).details:
        if detail.Unpack(info):
            infos[info.reason] = (info.domain, dict(info.metadata))
        else:
            detail.Unpack(bad_request)
    return error, bad_request, infos


@pytest.mark.parametrize("invalid", [50, 5_000])
def test_many_invalid_readings_are_invalid_argument_with_the_first_and_the_count(writing, new_meter, invalid):
    meter = new_meter()
    request = pb.WriteReadingsRequest(readings=[
        pb.ReadingInput(meter=meter, local_time=f"not a time {i:05d}", value=i) for i in range(invalid)
    ])

    error, bad_request, infos = refusal(lambda: writing(request))

    assert error.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert [v.field for v in bad_request.field_violations] == [f"readings[{i}]" for i in range(20)]
    assert infos[VIOLATIONS_CUT] == (ERROR_DOMAIN, {"violation_count": str(invalid)})
    assert error.details().endswith(f"; and {invalid - 5} more")


def test_a_huge_time_is_quoted_short(writing, new_meter):
    request = pb.WriteReadingsRequest(readings=[pb.ReadingInput(meter=new_meter(), local_time="9" * 5000, value=1)])

    error, bad_request, _infos = refusal(lambda: writing(request))

    assert error.code() is grpc.StatusCode.INVALID_ARGUMENT
    (violation,) = bad_request.field_violations
    assert len(violation.description) <= 240


def test_a_huge_meter_name_is_not_found_in_few_words(stub):
    with pytest.raises(grpc.RpcError) as raised:
        next(iter(stub.WatchReadings(pb.WatchReadingsRequest(meters=["m" * 10_000]), timeout=10)))

    assert raised.value.code() in (grpc.StatusCode.NOT_FOUND, grpc.StatusCode.INVALID_ARGUMENT)
    assert len(raised.value.details()) < 300
