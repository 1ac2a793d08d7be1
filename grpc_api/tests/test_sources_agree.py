"""Every RPC answers the same from the relational store, from the CSV file itself and from InfluxDB."""
import grpc
import pytest
from google.protobuf import json_format

from grpc_api.gen.meterusage.v1 import meter_usage_pb2 as pb
from testing.helpers import ts

pytestmark = [pytest.mark.django_db, pytest.mark.store]

RANGES = {
    "meterusage": [("2019-01-01T00:00:00Z", "2019-02-01T00:00:00Z"), ("2019-01-17T01:07:00Z", "2019-01-20T13:00:00Z")],
    "gen-a": [("2019-08-01T00:00:00Z", "2020-01-01T00:00:00Z"), ("2019-10-26T00:00:00Z", "2019-10-28T00:00:00Z")],
    "gen-b": [("2019-09-15T00:00:00Z", "2019-11-15T00:00:00Z")],
}
CASES = [(meter, start, end) for meter, ranges in RANGES.items() for start, end in ranges]


def as_dict(message) -> dict:
    return json_format.MessageToDict(message, preserving_proto_field_name=True)


@pytest.fixture(scope="module", params=["csv", "influx"])
def twin(request) -> str:
    """The source compared with the relational store: the CSV file, or the same data in InfluxDB.
    Module-scoped, so that InfluxDB is seeded before (not inside) a test's transaction."""
    if request.param == "influx":
        request.getfixturevalue("influx_meters")
    return request.param


def both(stub, method: str, request_type, meter: str, twin: str, **fields):
    call = getattr(stub, method)
    sql = call(request_type(meter=meter, **fields))
    other = call(request_type(meter=f"{meter}-{twin}", **fields))
    return sql, other


def close(a: dict, b: dict):
    """Equal, with float sums allowed to differ in the last bits (stores add in their own order)."""
    assert a.keys() == b.keys()
    for key in a:
        if isinstance(a[key], float):
            assert a[key] == pytest.approx(b[key], rel=1e-12), key
        elif isinstance(a[key], dict):
            close(a[key], b[key])
        elif isinstance(a[key], list):
            assert len(a[key]) == len(b[key]), key
            for x, y in zip(a[key], b[key]):
                if isinstance(x, dict):
                    close(x, y)
                else:
                    assert x == y, key
        else:
            assert a[key] == b[key], key


@pytest.mark.parametrize(("meter", "start", "end"), CASES)
def test_list_readings_agree(stub, twin, meter, start, end):
    sql, csv = both(stub, "ListReadings", pb.ListReadingsRequest, meter, twin,
                    start_time=ts(start), end_time=ts(end), page_size=10_000)
    assert list(sql.readings) == list(csv.readings)
    assert bool(sql.next_page_token) == bool(csv.next_page_token)


@pytest.mark.parametrize(("meter", "start", "end"), CASES)
def test_stream_readings_agree(stub, twin, meter, start, end):
    request = dict(start_time=ts(start), end_time=ts(end), batch_size=4000)
    sql = list(stub.StreamReadings(pb.StreamReadingsRequest(meter=meter, **request)))
    csv = list(stub.StreamReadings(pb.StreamReadingsRequest(meter=f"{meter}-{twin}", **request)))
    assert [(list(m.times), list(m.values)) for m in sql] == [(list(m.times), list(m.values)) for m in csv]


@pytest.mark.parametrize("window", [pb.WINDOW_15_MINUTES, pb.WINDOW_HOUR, pb.WINDOW_DAY, pb.WINDOW_WEEK, pb.WINDOW_MONTH])
@pytest.mark.parametrize("time_zone", ["UTC", "Europe/Amsterdam", "America/New_York"])
@pytest.mark.parametrize(("meter", "start", "end"), CASES)
def test_aggregates_agree(stub, twin, meter, start, end, window, time_zone):
    sql, csv = both(stub, "AggregateReadings", pb.AggregateReadingsRequest, meter, twin,
                    start_time=ts(start), end_time=ts(end), window=window, time_zone=time_zone)
    assert len(sql.buckets) > 0
    close(as_dict(sql), as_dict(csv))


@pytest.mark.parametrize(("meter", "start", "end"), CASES)
def test_completeness_agrees(stub, twin, meter, start, end):
    sql, csv = both(stub, "GetCompleteness", pb.GetCompletenessRequest, meter, twin, start_time=ts(start), end_time=ts(end))
    assert as_dict(sql) == as_dict(csv)


def test_meter_summaries_agree(stub, twin):
    meters = {m.name: m for m in stub.ListMeters(pb.ListMetersRequest()).meters}
    for name in RANGES:
        assert meters[f"{name}-{twin}"].source == {"csv": "csv", "influx": "influxdb"}[twin]
        sql, csv = as_dict(meters[name]), as_dict(meters[f"{name}-{twin}"])
        for key in ("reading_count", "first_reading_time", "last_reading_time", "interval"):
            assert sql[key] == csv[key], (name, key)


def test_influxdb_down_is_unavailable_and_recovers(stub, influx_meters, caplog):
    request = pb.ListReadingsRequest(
        meter="meterusage-influx", start_time=ts("2019-01-01T01:00:00Z"), end_time=ts("2019-01-01T02:00:00Z")
    )
    influx_meters.stop()
    try:
        with pytest.raises(grpc.RpcError) as error:
            stub.ListReadings(request)
        # Listing meters does not depend on every store being up.
        names = [m.name for m in stub.ListMeters(pb.ListMetersRequest()).meters]
    finally:
        influx_meters.start()

    assert error.value.code() == grpc.StatusCode.UNAVAILABLE
    assert error.value.details() == "InfluxDB is unavailable; try again later"
    assert f"InfluxDB at {influx_meters.url} is unreachable" in caplog.text
    assert "meterusage-influx" in names
    assert [r.value for r in stub.ListReadings(request).readings] == [56.03, 55.77, 55.45, 55.74]


# Ranges reaching past what InfluxDB can store (1677-09-21 to 2262-04-11) or lying wholly outside it.
FAR_RANGES = [
    ("1600-01-01T00:00:00Z", "2300-01-01T00:00:00Z"),
    ("2262-04-12T00:00:00Z", "2300-01-01T00:00:00Z"),
    ("1000-01-01T00:00:00Z", "1677-01-01T00:00:00Z"),
    ("0001-01-02T00:00:00Z", "9999-12-30T00:00:00Z"),
]
FAR_CALLS = [
    ("ListReadings", pb.ListReadingsRequest, {"page_size": 10_000}),
    ("AggregateReadings", pb.AggregateReadingsRequest, {"window": pb.WINDOW_MONTH, "time_zone": "Europe/Amsterdam"}),
    ("GetCompleteness", pb.GetCompletenessRequest, {}),
]


def outcome(call, request):
    try:
        return "OK", as_dict(call(request))
    except grpc.RpcError as error:
        return error.code().name, error.details()


@pytest.mark.parametrize(("method", "request_type", "fields"), FAR_CALLS)
@pytest.mark.parametrize(("start", "end"), FAR_RANGES)
def test_ranges_past_what_influxdb_stores_agree(stub, twin, method, request_type, fields, start, end):
    call, span = getattr(stub, method), dict(start_time=ts(start), end_time=ts(end), **fields)

    sql = outcome(call, request_type(meter="meterusage", **span))
    other = outcome(call, request_type(meter=f"meterusage-{twin}", **span))

    assert sql[0] in ("OK", "INVALID_ARGUMENT")
    assert sql[0] == other[0]
    if sql[0] == "OK":
        close(sql[1], other[1])
    else:
        assert sql[1] == other[1]
