"""WriteReadings against a real gRPC server: the rules and reasons of a file import, upserts with
corrections, atomic refusal of invalid readings, write tokens, and the change log it feeds."""
import math

import grpc
import pytest
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from grpc_api.gen.meterusage.v1 import meter_usage_pb2 as pb
from readings.models import ImportRun, Meter, ReadingChange
from testing.data import REFERENCE_READINGS
from testing.helpers import READER, WRITER, import_file, stored

# Transactional tests: the server writes with its own connections, which a test's open
# transaction would lock out of SQLite's tables. The tables are emptied after each test.
pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.store]

@pytest.fixture
def stub(write_server, settings, tmp_path):
    settings.READINGS_SOURCES = {
        "default": {"BACKEND": "readings.sources.sql.SqlSource"},
        "csv": {"BACKEND": "readings.sources.csv.CsvSource", "OPTIONS": {"DIRECTORY": str(tmp_path)}},
    }
    return write_server.stub


def reading(meter: str, time: str, value: float) -> pb.ReadingInput:
    return pb.ReadingInput(meter=meter, local_time=time, value=value)


def violations(error: grpc.RpcError) -> dict[str, str]:
    status = rpc_status.from_call(error)
    detail = error_details_pb2.BadRequest()
    status.details[0].Unpack(detail)
    return {v.field: v.description for v in detail.field_violations}


def test_the_reference_rows_count_as_their_import_does(stub, new_meter, reference_csv, django_db_blocker):
    imported, written = new_meter(), new_meter()
    with django_db_blocker.unblock():
        import_file(reference_csv, meter=imported)
        run = ImportRun.objects.get(meter_name=imported)
    text = reference_csv.read_text().splitlines()[1:]
    request = pb.WriteReadingsRequest(
        readings=[reading(written, line.split(",")[0], float(line.split(",")[1])) for line in text]
    )

    first = stub.WriteReadings(request, metadata=WRITER)
    again = stub.WriteReadings(request, metadata=WRITER)

    assert (first.inserted_count, first.updated_count, first.unchanged_count, first.skipped_count) == (
        run.rows_inserted, run.rows_updated, run.rows_unchanged, run.rows_skipped,
    ) == (REFERENCE_READINGS, 0, 0, 1)
    assert [(s.reason, s.index + 2) for s in first.skipped] == [(r["reason"], r["line"]) for r in run.rejected_rows]
    assert (again.inserted_count, again.updated_count, again.unchanged_count) == (0, 0, REFERENCE_READINGS)
    assert stored(written) == stored(imported)


def test_a_new_value_for_a_time_is_a_correction(stub, new_meter, django_db_blocker):
    name = new_meter()
    stub.WriteReadings(pb.WriteReadingsRequest(readings=[
        reading(name, "2019-01-01 00:15:00", 1.0), reading(name, "2019-01-01 00:30:00", 2.0),
    ]), metadata=WRITER)

    answer = stub.WriteReadings(pb.WriteReadingsRequest(readings=[
        reading(name, "2019-01-01 00:15:00", 1.0), reading(name, "2019-01-01 00:30:00", 2.5),
        reading(name, "2019-01-01 00:45:00", 3.0),
    ]), metadata=WRITER)

    assert (answer.inserted_count, answer.updated_count, answer.unchanged_count) == (1, 1, 1)
    assert stored(name) == {
        "2019-01-01T00:15:00+00:00": 1.0, "2019-01-01T00:30:00+00:00": 2.5, "2019-01-01T00:45:00+00:00": 3.0,
    }
    with django_db_blocker.unblock():
        log = list(ReadingChange.objects.filter(meter__name=name).order_by("id").values_list("value", "replaced"))
        meter = Meter.objects.get(name=name)
    assert sorted(log[:2]) == [(1.0, False), (2.0, False)]
    assert sorted(log[2:]) == [(2.5, True), (3.0, False)]
    assert (meter.reading_count, meter.first_reading_at.minute, meter.last_reading_at.minute) == (3, 15, 45)


def test_an_invalid_reading_refuses_the_whole_write(stub, new_meter):
    name = new_meter("Europe/Amsterdam")
    readings = [
        reading(name, "2019-03-31 01:45:00", 1.0),
        reading(name, "2019-03-31 02:15:00", 2.0),  # clocks moved forward: no such time
        reading(name, "yesterday", 3.0),
        pb.ReadingInput(meter=name, value=4.0),  # no time at all
    ]

    with pytest.raises(grpc.RpcError) as error:
        stub.WriteReadings(pb.WriteReadingsRequest(readings=readings), metadata=WRITER)

    assert error.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    found = violations(error.value)
    assert set(found) == {"readings[1]", "readings[2]", "readings[3]"}
    assert "does not exist in Europe/Amsterdam" in found["readings[1]"]
    assert "'yesterday' is not a timestamp" in found["readings[2]"]
    assert "time is empty" in found["readings[3]"]
    assert stored(name) == {}


def test_instants_meters_mixed_and_values_missing(stub, new_meter):
    a, b = new_meter("Europe/Amsterdam"), new_meter()
    stamp = pb.ReadingInput(meter=a, value=5.0)
    stamp.time.FromJsonString("2019-01-01T00:15:00Z")
    fraction = pb.ReadingInput(meter=b, value=1.0)
    fraction.time.FromJsonString("2019-01-01T00:15:00.500Z")

    answer = stub.WriteReadings(pb.WriteReadingsRequest(readings=[
        stamp, reading(b, "2019-01-01 00:15:00", math.nan), reading(b, "2019-01-01 00:30:00", math.inf),
        reading(a, "2019-01-01 01:30:00", 6.0), reading(a, "2019-01-01 01:30:00", 6.0),
    ]), metadata=WRITER)

    assert (answer.inserted_count, answer.skipped_count) == (2, 3)
    assert sorted((s.index, s.meter, s.reason) for s in answer.skipped) == [
        (1, b, "NaN"), (2, b, "infinite value"), (4, a, "duplicate of reading 3"),
    ]
    # Amsterdam's 01:30 is 00:30 UTC; the instant is stored as it is.
    assert stored(a) == {"2019-01-01T00:15:00+00:00": 5.0, "2019-01-01T00:30:00+00:00": 6.0}
    with pytest.raises(grpc.RpcError) as error:
        stub.WriteReadings(pb.WriteReadingsRequest(readings=[fraction]), metadata=WRITER)
    assert "fractional seconds" in violations(error.value)["readings[0]"]


@pytest.mark.parametrize(("metadata", "code"), [
    ((), grpc.StatusCode.UNAUTHENTICATED),
    ((("authorization", "Bearer nope"),), grpc.StatusCode.UNAUTHENTICATED),
    (READER, grpc.StatusCode.PERMISSION_DENIED),
])
def test_writing_needs_a_write_token(stub, write_server, new_meter, metadata, code):
    name = new_meter()
    with pytest.raises(grpc.RpcError) as error:
        write_server.anonymous_stub.WriteReadings(pb.WriteReadingsRequest(readings=[reading(name, "2019-01-01 00:15:00", 1.0)]), metadata=metadata)

    assert error.value.code() == code
    assert stored(name) == {}


def test_unknown_and_read_only_meters(stub, new_meter):
    read_only_meter = new_meter(source="csv")
    with pytest.raises(grpc.RpcError) as unknown:
        stub.WriteReadings(pb.WriteReadingsRequest(readings=[reading("no-such", "2019-01-01 00:15:00", 1.0)]), metadata=WRITER)
    with pytest.raises(grpc.RpcError) as read_only:
        stub.WriteReadings(pb.WriteReadingsRequest(readings=[reading(read_only_meter, "2019-01-01 00:15:00", 1.0)]), metadata=WRITER)

    assert unknown.value.code() == grpc.StatusCode.NOT_FOUND
    assert read_only.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "read-only" in read_only.value.details()


def test_a_file_import_feeds_the_change_log(new_meter, write_csv, django_db_blocker):
    name = new_meter()
    with django_db_blocker.unblock():
        import_file(write_csv("time,meterusage\n2019-01-01 00:15:00,1\n2019-01-01 00:30:00,2\n"), meter=name)
        import_file(write_csv("time,meterusage\n2019-01-01 00:30:00,2\n2019-01-01 00:45:00,3\n2019-01-01 00:15:00,9\n"), meter=name)
        log = list(ReadingChange.objects.filter(meter__name=name).order_by("id").values_list("time__minute", "value", "replaced"))
    # One write's changes come in no particular order among themselves.
    assert sorted(log[:2]) == [(15, 1.0, False), (30, 2.0, False)]
    assert sorted(log[2:]) == [(15, 9.0, True), (45, 3.0, False)]
