"""ListReadings and ListMeters against a real server: exact values, paging without loss."""
import math

import grpc
import pytest

from grpc_api.gen.meterusage.v1 import meter_usage_pb2 as pb
from testing.helpers import JANUARY, all_reading_pages, ts

pytestmark = [pytest.mark.django_db, pytest.mark.store]


@pytest.mark.parametrize("meter", ["meterusage", "meterusage-csv"])
def test_one_hour_is_the_four_readings(stub, meter):
    response = stub.ListReadings(
        pb.ListReadingsRequest(
            meter=meter, start_time=ts("2019-01-01T01:00:00Z"), end_time=ts("2019-01-01T02:00:00Z")
        )
    )

    assert [r.value for r in response.readings] == [56.03, 55.77, 55.45, 55.74]
    assert [r.time.ToJsonString() for r in response.readings] == [
        "2019-01-01T01:00:00Z", "2019-01-01T01:15:00Z", "2019-01-01T01:30:00Z", "2019-01-01T01:45:00Z",
    ]
    assert response.next_page_token == ""


@pytest.mark.parametrize("page_size", [1, 7, 96, 1000, 2974, 5000])
def test_paging_through_january_loses_and_repeats_nothing(stub, reference, page_size):
    readings, calls = all_reading_pages(stub, meter="meterusage", page_size=page_size, **JANUARY)

    assert readings == reference.readings
    # The last page says it is the last: no empty page after it.
    assert calls == math.ceil(2974 / page_size)


def test_default_and_maximum_page_sizes(stub):
    request = dict(meter="gen-a", start_time=ts("2019-09-01T00:00:00Z"), end_time=ts("2020-01-01T00:00:00Z"))

    assert len(stub.ListReadings(pb.ListReadingsRequest(**request)).readings) == 1000
    cut = stub.ListReadings(pb.ListReadingsRequest(**request, page_size=50_000))
    assert len(cut.readings) == 10_000
    assert cut.next_page_token


def test_page_token_is_opaque_and_bound_to_the_request(stub):
    first = stub.ListReadings(pb.ListReadingsRequest(meter="meterusage", page_size=10, **JANUARY))
    token = first.next_page_token

    assert "2019" not in token and str(first.readings[-1].time.seconds) not in token
    with pytest.raises(grpc.RpcError) as error:
        stub.ListReadings(
            pb.ListReadingsRequest(
                meter="meterusage", page_size=10, page_token=token,
                start_time=ts("2019-01-02T00:00:00Z"), end_time=ts("2019-02-01T00:00:00Z"),
            )
        )
    assert error.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "page_token" in error.value.details()
    # A different page size with the same range is fine: only what selects the readings is bound.
    second = stub.ListReadings(pb.ListReadingsRequest(meter="meterusage", page_size=3, page_token=token, **JANUARY))
    assert second.readings[0].time.ToJsonString() == "2019-01-01T02:45:00Z"


def test_list_meters_pages_in_name_order(stub):
    names, token = [], ""
    while True:
        response = stub.ListMeters(pb.ListMetersRequest(page_size=2, page_token=token))
        names += [m.name for m in response.meters]
        token = response.next_page_token
        if not token:
            break

    # "lost" and "orphan" have no working source: they are listed all the same.
    assert names == ["gen-a", "gen-a-csv", "gen-b", "gen-b-csv", "lost", "meterusage", "meterusage-csv", "orphan"]


def test_list_meters_describes_each_meter(stub):
    meters = {m.name: m for m in stub.ListMeters(pb.ListMetersRequest()).meters}

    sql, from_csv = meters["meterusage"], meters["meterusage-csv"]
    assert (sql.source, from_csv.source) == ("default", "csv")
    for meter in (sql, from_csv):
        assert meter.reading_count == 2974
        assert meter.first_reading_time.ToJsonString() == "2019-01-01T00:15:00Z"
        assert meter.last_reading_time.ToJsonString() == "2019-01-31T23:45:00Z"
        assert meter.interval.seconds == 900
        assert (meter.unit, meter.time_zone) == ("kWh", "UTC")
    assert meters["gen-a"].time_zone == "Europe/Amsterdam"
