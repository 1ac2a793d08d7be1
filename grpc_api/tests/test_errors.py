"""Bad requests get canonical codes and name the offending field; no input yields UNKNOWN."""
import grpc
import pytest
from google.protobuf.timestamp_pb2 import Timestamp
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from grpc_api.gen.meterusage.v1 import meter_usage_pb2 as pb
from testing.helpers import ts

pytestmark = pytest.mark.django_db

JAN = dict(start_time=ts("2019-01-01T00:00:00Z"), end_time=ts("2019-02-01T00:00:00Z"))
INVALID, NOT_FOUND, UNAVAILABLE = (
    grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.NOT_FOUND, grpc.StatusCode.UNAVAILABLE,
)

CASES = [
    ("every field of an aggregate wrong", "AggregateReadings",
     pb.AggregateReadingsRequest(meter="no such/meter", window=99, time_zone="Mars/Olympus"),
     INVALID, ["meter", "start_time", "end_time", "window", "time_zone"]),
    ("a bad page size and a reversed range", "ListReadings",
     pb.ListReadingsRequest(meter="meterusage", page_size=-1, start_time=JAN["end_time"], end_time=JAN["start_time"]),
     INVALID, ["page_size", "end_time"]),
    ("nanos below zero", "ListReadings",
     pb.ListReadingsRequest(meter="meterusage", start_time=Timestamp(seconds=1546300800, nanos=-1), end_time=JAN["end_time"]),
     INVALID, ["start_time"]),
    ("a billion nanos", "GetCompleteness",
     pb.GetCompletenessRequest(meter="meterusage", start_time=JAN["start_time"], end_time=Timestamp(seconds=1548979200, nanos=10**9)),
     INVALID, ["end_time"]),
    ("a meter name that breaks the rule", "GetMeter", pb.GetMeterRequest(name="a\nb"), INVALID, ["name"]),
    ("no meter", "ListReadings", pb.ListReadingsRequest(**JAN), INVALID, ["meter"]),
    ("unknown meter", "ListReadings", pb.ListReadingsRequest(meter="nope", **JAN), NOT_FOUND, []),
    ("no range", "ListReadings", pb.ListReadingsRequest(meter="meterusage"), INVALID, ["start_time", "end_time"]),
    ("start after end", "ListReadings",
     pb.ListReadingsRequest(meter="meterusage", start_time=JAN["end_time"], end_time=JAN["start_time"]),
     INVALID, ["end_time"]),
    ("empty range", "GetCompleteness",
     pb.GetCompletenessRequest(meter="meterusage", start_time=JAN["start_time"], end_time=JAN["start_time"]),
     INVALID, ["end_time"]),
    ("time past year 9999", "ListReadings",
     pb.ListReadingsRequest(meter="meterusage", start_time=JAN["start_time"], end_time=Timestamp(seconds=2**40)),
     INVALID, ["end_time"]),
    ("time before year 1", "StreamReadings",
     pb.StreamReadingsRequest(meter="meterusage", start_time=Timestamp(seconds=-2**40), end_time=JAN["end_time"]),
     INVALID, ["start_time"]),
    ("negative page size", "ListReadings", pb.ListReadingsRequest(meter="meterusage", page_size=-1, **JAN),
     INVALID, ["page_size"]),
    ("forged page token", "ListReadings", pb.ListReadingsRequest(meter="meterusage", page_token="abc", **JAN),
     INVALID, ["page_token"]),
    ("negative batch size", "StreamReadings", pb.StreamReadingsRequest(meter="meterusage", batch_size=-5, **JAN),
     INVALID, ["batch_size"]),
    ("forged resume token", "StreamReadings",
     pb.StreamReadingsRequest(meter="meterusage", resume_token="x" * 40, **JAN), INVALID, ["resume_token"]),
    ("stream of unknown meter", "StreamReadings", pb.StreamReadingsRequest(meter="nope", **JAN), NOT_FOUND, []),
    ("no window", "AggregateReadings", pb.AggregateReadingsRequest(meter="meterusage", **JAN), INVALID, ["window"]),
    ("unknown window", "AggregateReadings", pb.AggregateReadingsRequest(meter="meterusage", window=99, **JAN),
     INVALID, ["window"]),
    ("unknown time zone", "AggregateReadings",
     pb.AggregateReadingsRequest(meter="meterusage", window=pb.WINDOW_DAY, time_zone="Mars/Olympus", **JAN),
     INVALID, ["time_zone"]),
    ("time zone that is a folder", "AggregateReadings",
     pb.AggregateReadingsRequest(meter="meterusage", window=pb.WINDOW_DAY, time_zone="Europe", **JAN),
     INVALID, ["time_zone"]),
    ("overlong time zone", "AggregateReadings",
     pb.AggregateReadingsRequest(meter="meterusage", window=pb.WINDOW_DAY, time_zone="a" * 5000, **JAN),
     INVALID, ["time_zone"]),
    ("overlong meter name", "ListReadings", pb.ListReadingsRequest(meter="m" * 100_000, **JAN), INVALID, ["meter"]),
    ("too many windows", "AggregateReadings",
     pb.AggregateReadingsRequest(meter="meterusage", window=pb.WINDOW_15_MINUTES,
                                 start_time=ts("2000-01-01T00:00:00Z"), end_time=ts("2019-01-01T00:00:00Z")),
     INVALID, ["end_time"]),
    ("completeness range too large", "GetCompleteness",
     pb.GetCompletenessRequest(meter="meterusage", start_time=ts("1990-01-01T00:00:00Z"), end_time=ts("2019-01-01T00:00:00Z")),
     INVALID, ["end_time"]),
    ("csv file missing", "ListReadings", pb.ListReadingsRequest(meter="lost", **JAN), UNAVAILABLE, []),
    ("csv file missing, aggregates", "AggregateReadings",
     pb.AggregateReadingsRequest(meter="lost", window=pb.WINDOW_DAY, **JAN), UNAVAILABLE, []),
]


@pytest.mark.parametrize(("method", "request_message", "code", "fields"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_bad_request_gets_its_code(stub, method, request_message, code, fields):
    call = getattr(stub, method)

    with pytest.raises(grpc.RpcError) as raised:
        result = call(request_message)
        if method == "StreamReadings":
            list(result)

    error = raised.value
    assert error.code() == code, error.details()
    assert error.details()
    if code == INVALID:
        status = rpc_status.from_call(error)
        (detail,) = status.details
        bad_request = error_details_pb2.BadRequest()
        assert detail.Unpack(bad_request)
        assert [v.field for v in bad_request.field_violations] == fields
        assert all(v.description for v in bad_request.field_violations)


def test_unavailable_names_the_store_and_logs_where_it_is(stub, caplog):
    with pytest.raises(grpc.RpcError) as raised:
        stub.ListReadings(pb.ListReadingsRequest(meter="lost", **JAN))

    assert raised.value.details() == "CSV source 'broken' is unavailable; try again later"
    assert "lost.csv: No such file or directory" in caplog.text


def test_meter_with_an_unknown_source_alias_is_unavailable(stub, caplog):
    with pytest.raises(grpc.RpcError) as raised:
        stub.ListReadings(pb.ListReadingsRequest(meter="orphan", **JAN))

    assert raised.value.code() == UNAVAILABLE
    assert raised.value.details() == "source 'retired' is unavailable; try again later"
    assert "meter 'orphan' names source 'retired': READINGS_SOURCES has no alias 'retired'" in caplog.text


@pytest.mark.parametrize(("start", "end", "times"), [
    # A reading at t is in [start, end) when start <= t < end, fractions of a second included.
    (Timestamp(seconds=1546301700), Timestamp(seconds=1546301700, nanos=500_000_000), ["2019-01-01T00:15:00Z"]),
    (Timestamp(seconds=1546301700, nanos=1), Timestamp(seconds=1546302600, nanos=1), ["2019-01-01T00:30:00Z"]),
    (Timestamp(seconds=1546301700, nanos=1), Timestamp(seconds=1546301700, nanos=2), []),
])
def test_fractions_of_a_second_are_compared_exactly(stub, start, end, times):
    response = stub.ListReadings(pb.ListReadingsRequest(meter="meterusage", start_time=start, end_time=end))

    assert [r.time.ToJsonString() for r in response.readings] == times
