"""Every client sees the same figures of a meter, whatever store serves it: gRPC ListMeters and
GetMeter, the HTTP meter list and detail, and the dashboard's meter picker, for one meter on
each source holding the reference file."""
from datetime import datetime, timedelta

import pytest

from grpc_api.gen.meterusage.v1 import meter_usage_pb2 as pb
from testing.browser import expect_ready

pytestmark = pytest.mark.django_db

# One meter on each source, all holding the reference file.
METERS = {"meterusage": "default", "meterusage-csv": "csv", "meterusage-influx": "influxdb"}


@pytest.fixture(scope="module")
def expected(reference) -> tuple[int, str, str]:
    """Count, first and last reading of the reference file, as the csv module reads it."""
    readings = reference.readings
    return len(readings), readings[0][0], readings[-1][0]


def figures_of_message(message) -> tuple[int, str, str]:
    return message.reading_count, message.first_reading_time.ToJsonString(), message.last_reading_time.ToJsonString()


def figures_of_document(document: dict) -> tuple[int, str, str]:
    return document["reading_count"], document["first_reading_time"], document["last_reading_time"]


@pytest.mark.store
@pytest.mark.parametrize("meter", METERS)
def test_grpc_and_http_agree_with_the_file(stub, api, influx_meters, expected, meter):
    listed = {m.name: m for m in stub.ListMeters(pb.ListMetersRequest(page_size=1000)).meters}[meter]
    got = stub.GetMeter(pb.GetMeterRequest(name=meter))
    page = api.get("/api/v1/meters/", {"page_size": 1000}).json()["results"]
    http_listed = next(document for document in page if document["name"] == meter)
    http_detail = api.get(f"/api/v1/meters/{meter}/").json()

    assert (listed.source, got.source, http_listed["source"], http_detail["source"]) == (METERS[meter],) * 4
    assert figures_of_message(listed) == expected
    assert figures_of_message(got) == expected
    assert figures_of_document(http_listed) == expected
    assert figures_of_document(http_detail) == expected


def wall_time(rfc3339: str, *, plus: timedelta = timedelta(0)) -> str:
    """A UTC time as the dashboard's datetime-local inputs show it (the meters' zone is UTC)."""
    return (datetime.fromisoformat(rfc3339.replace("Z", "+00:00")) + plus).strftime("%Y-%m-%dT%H:%M")


@pytest.mark.parametrize("meter", METERS)
def test_the_dashboard_picker_agrees(page, influx_meters, expected, meter):
    count, first, last = expected

    page.goto(f"/?meter={meter}")
    expect_ready(page)

    option = page.locator(f"#meter option[value='{meter}']")
    assert option.inner_text() == f"{meter} ({count:,} readings)"
    assert page.locator("#meter").input_value() == meter
    # The range opens on the meter's whole data: first reading to just after the last.
    assert page.locator("#start").input_value() == wall_time(first)
    assert page.locator("#end").input_value() == wall_time(last, plus=timedelta(minutes=15))
