"""simulate_meters: the fleet's readings, its pace, and WriteReadings to a real gRPC server (the
MQTT path runs against the consumer in test_ingest_mqtt)."""
from datetime import date
from io import StringIO

import pytest
from django.core.management import CommandError, call_command

from gateway.simulate import Reading as SimReading
from gateway.simulate import fleet_names, fleet_readings, paced
from readings.models import Meter, Reading
from testing.helpers import WRITE_TOKEN

# The server writes with its own connections: transactional tests (tables emptied after each).
pytestmark = pytest.mark.django_db(transaction=True)


def test_meters_take_turns_each_in_time_order():
    readings = list(fleet_readings(fleet_names("f", 3), total=7, start=date(2020, 1, 1), seed=1))

    assert [r.meter for r in readings] == ["f-001", "f-002", "f-003"] * 2 + ["f-001"]
    first = [r.time for r in readings if r.meter == "f-001"]
    assert first[0].startswith("2020-01-01 ") and first == sorted(first)
    assert all(0 < r.value < 1000 for r in readings)


def test_readings_are_sent_no_faster_than_the_rate():
    now, sent = [0.0], []

    def sleep(seconds):
        now[0] += seconds

    count = paced(iter([SimReading("m", "t", 1.0)] * 10), rate=4, duration=None, chunk=2,
                  send=lambda chunk: sent.append((now[0], len(chunk))), clock=lambda: now[0], sleep=sleep)

    assert count == 10
    assert sent == [(0.5, 2), (1.0, 2), (1.5, 2), (2.0, 2), (2.5, 2)]


def test_missing_meters_are_named_unless_created():
    with pytest.raises(CommandError, match=r"3 of the 3 meters do not exist \(first: nope-001\): add --create"):
        call_command("simulate_meters", "--meters", "3", "--prefix", "nope", "--count", "3", "--grpc")


def test_write_readings_over_grpc(write_server):
    out = StringIO()
    call_command(
        "simulate_meters", "--grpc", "--meters", "4", "--rate", "2000", "--count", "400", "--prefix", "g",
        "--create", "--start", "2020-01-01", "--target", write_server.target, "--token", WRITE_TOKEN,
        stdout=out,
    )

    assert out.getvalue().startswith(f"400 readings of 4 meters sent to gRPC {write_server.target} in ")
    assert sorted(Meter.objects.values_list("name", flat=True)) == ["g-001", "g-002", "g-003", "g-004"]
    assert Reading.objects.count() == 400
    assert Reading.objects.filter(meter__name="g-002").count() == 100
