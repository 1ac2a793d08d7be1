"""Meters and import runs from the relational store: lists, filters, detail and permissions."""
import getpass

import pytest
from django.contrib.auth.models import User

from accounts.keys import create_key

pytestmark = pytest.mark.django_db


def names(response) -> list[str]:
    assert response.status_code == 200, response.content
    return [meter["name"] for meter in response.json()["results"]]


def test_meter_detail(api):
    response = api.get("/api/v1/meters/meterusage/")

    assert response.status_code == 200
    link = "http://testserver/api/v1/meters/meterusage/{}/?start=2019-01-01T00%3A15%3A00Z&end=2019-02-01T00%3A00%3A00Z"
    assert response.json() == {
        "url": "http://testserver/api/v1/meters/meterusage/",
        "name": "meterusage",
        "description": "",
        "unit": "kWh",
        "time_zone": "UTC",
        "interval_seconds": 900,
        "source": "default",
        "reading_count": 2974,
        "first_reading_time": "2019-01-01T00:15:00Z",
        "last_reading_time": "2019-01-31T23:45:00Z",
        "readings_unavailable": None,
        "links": {
            "readings": link.format("readings"),
            "aggregates": link.format("aggregates") + "&window=day",
            "completeness": link.format("completeness"),
        },
    }


def test_meter_links_lead_to_all_its_data(api):
    links = api.get("/api/v1/meters/meterusage/").json()["links"]

    assert len(api.get(links["readings"] + "&page_size=10000").json()["readings"]) == 2974
    assert api.get(links["aggregates"]).json()["total"]["count"] == 2974
    assert api.get(links["completeness"]).json()["missing_count"] == 1


def test_meters_are_listed_by_name_in_pages(api):
    response = api.get("/api/v1/meters/", {"page_size": 3})

    body = response.json()
    assert body["count"] == 8
    assert [m["name"] for m in body["results"]] == ["gen-a", "gen-a-csv", "gen-b"]
    assert body["next"] == "http://testserver/api/v1/meters/?page=2&page_size=3"
    assert body["previous"] is None


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ({"source": "csv"}, ["gen-a-csv", "gen-b-csv", "meterusage-csv"]),
        ({"search": "gen-b"}, ["gen-b", "gen-b-csv"]),
        # Every store's count: the csv meters serve the same files as their sql twins. "lost" and
        # "orphan", whose stores cannot answer, match neither value of has_readings.
        ({"has_readings": "true"}, ["gen-a", "gen-a-csv", "gen-b", "gen-b-csv", "meterusage", "meterusage-csv"]),
        ({"has_readings": "false"}, []),
        ({"time_zone": "Europe/Amsterdam", "source": "csv"}, ["gen-a-csv", "gen-b-csv"]),
        # 11452, 11441 and 2974 readings; ties in name order; meters without figures last.
        ({"ordering": "-reading_count"}, ["gen-b", "gen-b-csv", "gen-a", "gen-a-csv", "meterusage", "meterusage-csv", "lost", "orphan"]),
        ({"ordering": "first_reading_time", "search": "usage"}, ["meterusage", "meterusage-csv"]),
        ({"ordering": "-name", "source": "csv"}, ["meterusage-csv", "gen-b-csv", "gen-a-csv"]),
    ],
)
def test_meter_filters(api, query, expected):
    assert names(api.get("/api/v1/meters/", query)) == expected


@pytest.mark.parametrize(
    ("query", "field", "description"),
    [
        ({"has_readings": "maybe"}, "has_readings", "must be true or false"),
        ({"page_size": "0"}, "page_size", "must be a whole number from 1 to 1000"),
        ({"page_size": "1001"}, "page_size", "must be a whole number from 1 to 1000"),
    ],
)
def test_bad_list_parameters_are_400(api, query, field, description):
    response = api.get("/api/v1/meters/", query)

    assert response.status_code == 400
    assert response.json()["errors"] == [{"field": field, "description": description}]


def test_meter_list_as_csv_is_not_offered(api):
    assert api.get("/api/v1/meters/", {"format": "csv"}).status_code == 404


def test_import_runs_need_a_staff_user(api):
    anonymous = api.get("/api/v1/import-runs/")
    assert anonymous.status_code == 401
    assert anonymous["WWW-Authenticate"] == 'Bearer realm="api"'
    assert anonymous["Content-Type"] == "application/problem+json"

    api.force_authenticate(User.objects.create_user("reader"))
    refused = api.get("/api/v1/import-runs/")
    assert refused.status_code == 403
    assert refused.json()["detail"] == "You do not have permission to perform this action."


def test_import_runs_for_staff_by_key(api):
    staff = User.objects.create_user("operator", is_staff=True)
    _, key = create_key(user=staff)
    api.credentials(HTTP_AUTHORIZATION=f"Bearer {key}")

    runs = api.get("/api/v1/import-runs/", {"meter": "meterusage"}).json()["results"]

    assert len(runs) == 1
    run = runs[0]
    assert (run["meter"], run["status"], run["rows_read"], run["rows_inserted"], run["rows_skipped"]) == (
        "meterusage", "succeeded", 2975, 2974, 1,
    )
    assert "rejected_rows" not in run
    assert run["written_by"] == f"command:{getpass.getuser()}"
    detail = api.get(f"/api/v1/import-runs/{run['id']}/").json()
    assert detail["rejected_rows"] == [{"line": 1548, "value": "NaN", "reason": "NaN", "kind": "skipped"}]


def test_import_runs_filter_by_status(api):
    api.force_authenticate(User.objects.create_user("operator", is_staff=True))

    assert api.get("/api/v1/import-runs/", {"status": "succeeded"}).json()["count"] == 3
    assert api.get("/api/v1/import-runs/", {"status": "failed"}).json()["count"] == 0
    bad = api.get("/api/v1/import-runs/", {"status": "lost"})
    assert bad.status_code == 400
    assert bad.json()["errors"][0]["field"] == "status"


def test_session_sign_in_reads_import_runs(api):
    User.objects.create_user("operator", password="pw-for-tests", is_staff=True)
    # Signed in as a person is: through the sign-in form (which the lockout guards).
    signed_in = api.post("/admin/login/?next=/admin/", {"username": "operator", "password": "pw-for-tests"})
    assert signed_in.status_code == 302

    assert api.get("/api/v1/import-runs/").json()["count"] == 3


def test_api_root_lists_the_collections(api):
    assert api.get("/api/v1/").json() == {
        "meters": "http://testserver/api/v1/meters/",
        "import-runs": "http://testserver/api/v1/import-runs/",
        "rejected-messages": "http://testserver/api/v1/rejected-messages/",
    }
