"""WriteReadings in the contract's types: instants, wall times in the meter's zone (a civil
google.type.DateTime), values as numbers; nothing becomes text to be read again."""
import grpc
import pytest
from google.protobuf import duration_pb2, timestamp_pb2
from google.type import datetime_pb2

from grpc_api.gen.meterusage.v1 import meter_usage_pb2 as pb
from testing.helpers import WRITER, stored

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.store]


def wall(text: str, **extra) -> datetime_pb2.DateTime:
    day, clock = text.split(" ")
    year, month, date = (int(part) for part in day.split("-"))
    hours, minutes, seconds = (int(part) for part in clock.split(":"))
    return datetime_pb2.DateTime(year=year, month=month, day=date, hours=hours, minutes=minutes, seconds=seconds, **extra)


def write(stub, *readings: pb.ReadingInput) -> pb.WriteReadingsResponse:
    return stub.WriteReadings(pb.WriteReadingsRequest(readings=readings), timeout=10, metadata=WRITER)


def test_wall_times_are_read_in_the_meters_zone_and_instants_as_they_are(write_server, new_meter):
    meter = new_meter("Europe/Amsterdam")

    counts = write(
        write_server.stub,
        pb.ReadingInput(meter=meter, wall_time=wall("2019-07-01 02:00:00"), value=1.5),  # summer: UTC+2
        pb.ReadingInput(meter=meter, wall_time=wall("2019-01-01 01:00:00"), value=2.5),  # winter: UTC+1
        pb.ReadingInput(meter=meter, time=timestamp_pb2.Timestamp(seconds=1546304400 + 900), value=3.5),
        pb.ReadingInput(
            meter=meter, wall_time=wall("2019-01-01 05:00:00", utc_offset=duration_pb2.Duration(seconds=3600)),
            value=4.5,
        ),
    )

    assert counts.inserted_count == 4
    assert stored(meter) == {
        "2019-07-01T00:00:00+00:00": 1.5,
        "2019-01-01T00:00:00+00:00": 2.5,
        "2019-01-01T01:15:00+00:00": 3.5,
        "2019-01-01T04:00:00+00:00": 4.5,
    }


@pytest.mark.parametrize(
    ("when", "reason"),
    [
        ({"wall_time": wall("2019-02-30 00:00:00")}, "time '2019-02-30 00:00:00' is not a date and time that exists"),
        ({"wall_time": wall("2019-03-31 02:30:00")},
         "time '2019-03-31 02:30:00' does not exist in Europe/Amsterdam (clocks moved forward)"),
        ({"wall_time": wall("2019-01-01 00:00:00", nanos=5)},
         "time '2019-01-01 00:00:00' has fractional seconds; whole seconds are expected"),
        ({"wall_time": wall("2019-01-01 00:00:00", time_zone=datetime_pb2.TimeZone(id="UTC"))},
         "time '2019-01-01 00:00:00' names a time zone; send it without (the meter's zone) or as an instant"),
        ({"time": timestamp_pb2.Timestamp(seconds=1546300800, nanos=1)},
         "time '2019-01-01T00:00:00.000000001Z' has fractional seconds; whole seconds are expected"),
        ({}, "time is empty"),
    ],
    ids=["no such date", "skipped by the clock", "fractional", "with a zone", "instant with nanos", "no time"],
)
def test_a_typed_time_that_is_no_reading_time_is_refused_as_a_files_row_would_be(write_server, new_meter, when, reason):
    meter = new_meter("Europe/Amsterdam")

    with pytest.raises(grpc.RpcError) as raised:
        write(write_server.stub, pb.ReadingInput(meter=meter, value=1.0, **when))

    assert raised.value.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert raised.value.details().startswith(f"readings[0]: {reason}")
    assert stored(meter) == {}


def refused_readings(error: grpc.RpcError) -> pb.RefusedReadings:
    from grpc_status import rpc_status

    found = pb.RefusedReadings()
    assert any(detail.Unpack(found) for detail in rpc_status.from_call(error).details)
    return found


def test_a_refusal_names_each_reading_in_types(write_server, new_meter):
    meter = new_meter()

    with pytest.raises(grpc.RpcError) as raised:
        write(
            write_server.stub,
            pb.ReadingInput(meter=meter, wall_time=wall("2019-01-01 00:15:00"), value=1.0),
            pb.ReadingInput(meter=meter, local_time="yesterday", value=2.0),
            pb.ReadingInput(meter=meter, wall_time=wall("2019-01-01 00:15:00"), value=3.0),
        )

    refused = refused_readings(raised.value)
    assert refused.refused_count == 2
    assert [(r.index, r.meter, r.field, r.reason) for r in refused.readings] == [
        (1, meter, "time", "TIME_NOT_A_TIME"),
        (2, meter, "time", "CONFLICTING_VALUES"),
    ]
    assert refused.readings[1].description == (
        "readings 0 and 2 both give time 2019-01-01 00:15:00 with different values (1.0 and 3.0)"
    )


def test_reasons_name_readings_in_the_clients_own_rows(write_server, new_meter):
    meter = new_meter()
    stub = write_server.stub

    answer = stub.WriteReadings(pb.WriteReadingsRequest(row_unit="line", readings=[
        pb.ReadingInput(meter=meter, local_time="2019-01-01 00:15:00", value=1.0, row_number=12),
        pb.ReadingInput(meter=meter, local_time="2019-01-01 00:15:00", value=1.0, row_number=40),
    ]), timeout=10, metadata=WRITER)
    with pytest.raises(grpc.RpcError) as raised:
        stub.WriteReadings(pb.WriteReadingsRequest(row_unit="lines of a poem", readings=[
            pb.ReadingInput(meter=meter, local_time="2019-01-01 00:15:00", value=1.0),
        ]), timeout=10, metadata=WRITER)

    assert [(s.index, s.reason) for s in answer.skipped] == [(1, "duplicate of line 12")]
    assert raised.value.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert raised.value.details() == "row_unit: must be empty or one of line, row"
