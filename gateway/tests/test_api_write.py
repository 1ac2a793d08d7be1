"""POST /api/v1/meters/{meter}/readings/ through a real gRPC server (WriteReadings): files get the
counts and reasons their import gives, JSON in both shapes, who may write, refusals that write
nothing, body limits, and answers of the cache that a write makes stale."""
import pytest
from django.contrib.auth.models import User
from django.core.management.base import CommandError
from rest_framework.test import APIClient

from accounts.keys import create_key, prefix_of
from accounts.models import Account, ApiKey
from readings.models import ImportRun, Meter
from testing.data import REFERENCE_NAN_LINE, REFERENCE_READINGS
from testing.helpers import grpc_calls, import_file, stored

# Transactional: the gRPC server writes with its own connections, which a test's open
# transaction would lock out of SQLite's tables. The tables are emptied after each test.
pytestmark = pytest.mark.django_db(transaction=True)

CSV = "text/csv"
# Rows an import takes with every kind of row it sets aside: NaN, NA, an empty value, infinity,
# a blank line, a repeated row, in Amsterdam across the autumn clock change (the repeated hour in
# file order).
AWKWARD = (
    "time,meterusage\n"
    "2019-10-27 01:45:00,1.5\n"
    "2019-10-27 02:00:00,NaN\n"
    "2019-10-27 02:15:00,NA\n"
    "2019-10-27 02:30:00,\n"
    "\n"
    "2019-10-27 02:45:00,inf\n"
    "2019-10-27 02:00:00,2\n"
    "2019-10-27 02:15:00,2.25\n"
    "2019-10-27 01:45:00,1.5\n"
    "2019-10-27 03:00:00,3\n"
)
# Rows an import refuses, each for its own reason: a time that does not exist (clocks went
# forward), a value that is no number, a time that is none, a fraction of a second.
INVALID = (
    "time,meterusage\n"
    "2019-03-31 01:45:00,1\n"
    "2019-03-31 02:15:00,2\n"
    "2019-03-31 03:00:00,1,5\n"
)
INVALID_ROWS = (
    "time,meterusage\n"
    "2019-03-31 01:45:00,1\n"
    "2019-03-31 02:15:00,2\n"
    "2019-03-31 03:00:00,abc\n"
    "yesterday,4\n"
    "2019-03-31 03:15:00.5,5\n"
    "2019-03-31 03:30:00,6\n"
)


def url(meter: str) -> str:
    return f"/api/v1/meters/{meter}/readings/"


def post_csv(client, meter: str, text: str):
    return client.post(url(meter), text.encode(), content_type=CSV)


def import_run(path, meter: str) -> ImportRun:
    import_file(path, meter=meter)
    return ImportRun.objects.filter(meter_name=meter).latest("id")


def test_the_reference_file_posted_counts_as_its_import(staff, new_meter, reference_csv):
    imported, posted = new_meter(), new_meter()
    run = import_run(reference_csv, imported)

    first = post_csv(staff, posted, reference_csv.read_text())
    again = post_csv(staff, posted, reference_csv.read_text())

    assert first.status_code == 200, first.json()
    assert first.json() == {
        "inserted": run.rows_inserted, "updated": run.rows_updated, "unchanged": run.rows_unchanged,
        "skipped": run.rows_skipped,
        "rejected": [{"line": r["line"], "value": "NaN", "reason": r["reason"]} for r in run.rejected_rows],
    }
    assert first.json()["rejected"] == [{"line": REFERENCE_NAN_LINE, "value": "NaN", "reason": "NaN"}]
    assert (run.rows_inserted, again.json()["unchanged"], again.json()["inserted"]) == (REFERENCE_READINGS, REFERENCE_READINGS, 0)
    assert stored(posted) == stored(imported)


def test_an_awkward_file_is_set_aside_as_its_import_sets_it_aside(staff, new_meter, write_csv):
    imported, posted = new_meter("Europe/Amsterdam"), new_meter("Europe/Amsterdam")
    run = import_run(write_csv(AWKWARD), imported)

    answer = post_csv(staff, posted, AWKWARD).json()

    assert (answer["inserted"], answer["updated"], answer["unchanged"], answer["skipped"]) == (
        run.rows_inserted, run.rows_updated, run.rows_unchanged, run.rows_skipped,
    ) == (4, 0, 0, 5)
    assert [(r["line"], r["reason"]) for r in answer["rejected"]] == [(r["line"], r["reason"]) for r in run.rejected_rows] == [
        (3, "NaN"), (4, "NA (missing)"), (5, "empty value"), (7, "infinite value"), (10, "duplicate of line 2"),
    ]
    assert stored(posted) == stored(imported)


def test_invalid_rows_are_listed_with_the_reasons_of_their_import_and_nothing_is_written(staff, new_meter, write_csv):
    imported, posted = new_meter("Europe/Amsterdam"), new_meter("Europe/Amsterdam")
    with pytest.raises(CommandError):
        import_file(write_csv(INVALID_ROWS), meter=imported)
    run = ImportRun.objects.get(meter_name=imported)

    response = post_csv(staff, posted, INVALID_ROWS)

    assert response.status_code == 400
    assert response["Content-Type"] == "application/problem+json"
    problem = response.json()
    expected = [(r["line"], r["reason"]) for r in run.rejected_rows if r["kind"] == "invalid"]
    assert [(e["line"], e["reason"]) for e in problem["errors"]] == expected
    assert [line for line, _ in expected] == [3, 4, 5, 6]
    assert "does not exist in Europe/Amsterdam" in problem["errors"][0]["reason"]
    assert problem["errors"][1] == {
        "field": "line 4", "description": "meterusage 'abc' is not a number", "line": 4, "value": "abc",
        "reason": "meterusage 'abc' is not a number",
    }
    assert problem["detail"].startswith("4 invalid rows, nothing written: line 3: ")
    assert stored(posted) == {}


def test_a_file_an_import_refuses_whole_is_refused_with_its_line(staff, new_meter, write_csv):
    posted = new_meter()
    with pytest.raises(CommandError) as refused:
        import_file(write_csv(INVALID), meter=new_meter())

    response = post_csv(staff, posted, INVALID)
    header = post_csv(staff, posted, "when,kwh\n2019-01-01 00:15:00,1\n")

    assert response.status_code == header.status_code == 400
    assert response.json()["detail"] == "line 4: expected 2 fields, found 3: '2019-03-31 03:00:00,1,5'"
    assert "line 4: expected 2 fields, found 3" in str(refused.value)
    assert header.json()["errors"] == [{"field": "line 1", "description": "expected the header 'time,meterusage', found 'when,kwh'"}]


@pytest.mark.parametrize("shape", ["list", "object"])
def test_json_in_both_shapes(staff, new_meter, shape):
    name = new_meter("Europe/Amsterdam")
    readings = [
        {"time": "2019-01-01T00:15:00Z", "value": 1.5},
        {"time": "2019-01-01 01:30:00", "value": "2.5"},  # Amsterdam's wall clock: 00:30 UTC
        {"time": "2019-01-01T00:45:00+00:00", "value": None},
        {"time": "2019-01-01T00:15:00Z", "value": 1.5},
    ]
    body = readings if shape == "list" else {"readings": readings}

    response = staff.post(url(name), body, format="json")

    assert response.status_code == 200
    assert response.json() == {
        "inserted": 2, "updated": 0, "unchanged": 0, "skipped": 2,
        "rejected": [
            {"index": 2, "value": None, "reason": "empty value"},
            {"index": 3, "value": 1.5, "reason": "duplicate of reading 0"},
        ],
    }
    assert stored(name) == {"2019-01-01T00:15:00+00:00": 1.5, "2019-01-01T00:30:00+00:00": 2.5}


def test_a_correction_replaces_the_value(staff, new_meter):
    name = new_meter()
    staff.post(url(name), [{"time": "2019-01-01 00:15:00", "value": 1}], format="json")

    answer = staff.post(url(name), [{"time": "2019-01-01 00:15:00", "value": 2}], format="json").json()

    assert (answer["inserted"], answer["updated"], answer["unchanged"]) == (0, 1, 0)
    assert stored(name) == {"2019-01-01T00:15:00+00:00": 2.0}


def test_invalid_json_readings_are_named_by_index_and_nothing_is_written(staff, new_meter):
    name = new_meter("Europe/Amsterdam")
    response = staff.post(url(name), [
        {"time": "2019-03-31 01:45:00", "value": 1},
        {"time": "2019-03-31 02:30:00", "value": 2},
        {"time": "2019-03-31 03:00:00", "value": "1,5"},
        {"time": "2019-03-31 03:15:00", "value": 3},
        {"time": "2019-03-31 03:15:00", "value": 4},
    ], format="json")

    assert response.status_code == 400
    errors = {e["field"]: e["reason"] for e in response.json()["errors"]}
    assert list(errors) == ["readings[1]", "readings[2]", "readings[4]"]
    assert "does not exist in Europe/Amsterdam" in errors["readings[1]"]
    assert errors["readings[2]"] == "meterusage '1,5' is not a number (use a decimal point)"
    assert errors["readings[4]"].startswith("readings 3 and 4 both give time 2019-03-31 03:15:00 with different values")
    assert stored(name) == {}


@pytest.mark.parametrize(("body", "field"), [
    ({"rows": []}, "readings"),
    ([{"time": "2019-01-01 00:15:00"}], "readings[0].value"),
    ([{"time": "2019-01-01 00:15:00", "value": 1}, {"time": 5, "value": True}], "readings[1].value"),
])
def test_json_of_another_shape_is_refused(staff, new_meter, body, field):
    response = staff.post(url(new_meter()), body, format="json")

    assert response.status_code == 400
    assert field in [e["field"] for e in response.json()["errors"]]


def test_who_may_write(write_server, new_meter):
    """Members of the meter's account write, signed in or with a write key; anyone else is
    refused by the service and nothing is written. The meter is public: everyone reads it."""
    name = new_meter()
    acme = Account.objects.create(name="acme")
    Meter.objects.filter(name=name).update(account=acme, public=True)
    member, outsider = User.objects.create_user("member"), User.objects.create_user("outsider")
    acme.members.add(member)
    _, write_key = create_key(user=member, scope=ApiKey.Scope.WRITE)
    _, read_key = create_key(user=member, scope=ApiKey.Scope.READ)
    anonymous, as_outsider, by_read_key, by_write_key, as_member = (APIClient() for _ in range(5))
    as_outsider.force_login(outsider)
    as_member.force_login(member)
    by_read_key.credentials(HTTP_AUTHORIZATION=f"Bearer {read_key}")
    by_write_key.credentials(HTTP_AUTHORIZATION=f"Bearer {write_key}")
    body = [{"time": "2019-01-01 00:15:00", "value": 1}]

    refused = [client.post(url(name), body, format="json") for client in (anonymous, as_outsider, by_read_key)]

    assert [r.status_code for r in refused] == [401, 403, 403]
    assert all(r["Content-Type"] == "application/problem+json" for r in refused)
    assert refused[0]["WWW-Authenticate"] == 'Bearer realm="api"'
    assert refused[1].json()["detail"] == f"user:outsider may read meter '{name}' but not write it"
    assert refused[2].json()["detail"] == f"key:{prefix_of(read_key)} may read but not write readings"
    assert stored(name) == {}
    assert by_write_key.post(url(name), body, format="json").json()["inserted"] == 1
    assert as_member.post(url(name), [{"time": "2019-01-01 00:30:00", "value": 2}], format="json").json()["inserted"] == 1
    assert anonymous.get(url(name), {"start": "2019-01-01", "end": "2019-01-02"}).json()["readings"] == [
        {"time": "2019-01-01T00:15:00Z", "value": 1.0}, {"time": "2019-01-01T00:30:00Z", "value": 2.0},
    ]


def test_a_meter_the_writer_may_not_see_is_not_found_as_a_missing_one(write_server, new_meter):
    name = new_meter()
    Meter.objects.filter(name=name).update(account=Account.objects.create(name="acme"))
    outsider = APIClient()
    outsider.force_login(User.objects.create_user("outsider"))
    body = [{"time": "2019-01-01 00:15:00", "value": 1}]

    hidden, missing = (outsider.post(url(meter), body, format="json") for meter in (name, "no-such-meter"))

    assert (hidden.status_code, missing.status_code) == (404, 404)
    assert hidden.json()["detail"].replace(name, "no-such-meter") == missing.json()["detail"]
    assert stored(name) == {}


def test_staff_write_without_any_service_token(staff, new_meter, settings):
    """The gateway writes as its caller: it needs no service write token of its own."""
    settings.GRPC_WRITE_TOKENS = []
    settings.GRPC_WRITE_TOKEN = ""
    name = new_meter()

    response = staff.post(url(name), [{"time": "2019-01-01 00:15:00", "value": 1}], format="json")

    assert response.status_code == 200, response.content
    assert list(stored(name).values()) == [1.0]


def test_unknown_meters_bodies_too_large_and_other_media(staff, new_meter, settings):
    name = new_meter()
    settings.API_WRITE_MAX_BYTES = 100

    unknown = staff.post(url("no-such-meter"), [], format="json")
    too_large = post_csv(staff, name, "time,meterusage\n" + "2019-01-01 00:15:00,1\n" * 10)
    other = staff.post(url(name), b"time meterusage", content_type="text/plain")
    empty = staff.post(url(name), b"", content_type=CSV)

    assert (unknown.status_code, too_large.status_code, other.status_code, empty.status_code) == (404, 413, 415, 400)
    assert too_large.json()["detail"] == "the body may hold at most 100 bytes (API_WRITE_MAX_BYTES)"
    assert empty.json()["detail"] == "body: the file is empty; expected the header 'time,meterusage'"
    assert stored(name) == {}


def test_a_write_makes_cached_answers_stale(staff, new_meter, settings):
    settings.API_CACHE_SECONDS = 300
    name = new_meter()
    staff.post(url(name), [{"time": "2019-01-01 00:15:00", "value": 1}], format="json")
    january = {"start": "2019-01-01", "end": "2019-02-01", "window": "month"}
    before = Meter.objects.get(name=name).data_version
    calls = grpc_calls("AggregateReadings")
    assert staff.get(f"/api/v1/meters/{name}/aggregates/", january).json()["total"]["sum"] == 1.0
    # Kept: the same answer again, the service not asked again.
    assert staff.get(f"/api/v1/meters/{name}/aggregates/", january).json()["total"]["sum"] == 1.0
    assert grpc_calls("AggregateReadings") == calls + 1

    staff.post(url(name), [{"time": "2019-01-01 00:15:00", "value": 5}, {"time": "2019-01-01 00:30:00", "value": 2}], format="json")

    assert Meter.objects.get(name=name).data_version > before
    assert staff.get(f"/api/v1/meters/{name}/aggregates/", january).json()["total"]["sum"] == 7.0
