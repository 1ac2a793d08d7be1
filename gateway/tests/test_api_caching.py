"""Ranges that have ended carry an ETag and answer If-None-Match with 304; open ones do not."""
import pytest

pytestmark = pytest.mark.django_db

READINGS = "/api/v1/meters/meterusage/readings/"
JANUARY = {"start": "2019-01-01", "end": "2019-02-01"}


@pytest.mark.parametrize("path", ["readings", "aggregates", "completeness"])
def test_a_past_range_is_revalidated_by_etag(api, path):
    url, query = f"/api/v1/meters/meterusage/{path}/", {**JANUARY, "window": "day"}
    first = api.get(url, query)
    etag = first["ETag"]
    assert etag.startswith('"') and etag.endswith('"') and len(etag) == 34
    assert first["Cache-Control"] == "no-cache"

    again = api.get(url, query, HTTP_IF_NONE_MATCH=etag)

    assert again.status_code == 304
    assert again.content == b""
    assert again["ETag"] == etag
    assert again["Vary"] == "Accept, Cookie"


def test_a_weak_etag_matches_too(api):
    etag = api.get(READINGS, JANUARY)["ETag"]

    assert api.get(READINGS, JANUARY, HTTP_IF_NONE_MATCH=f'"other", W/{etag}').status_code == 304


def test_another_etag_gets_the_data(api):
    response = api.get(READINGS, JANUARY, HTTP_IF_NONE_MATCH='"something-else"')

    assert response.status_code == 200
    assert len(response.json()["readings"]) == 1000


def test_each_representation_has_its_own_etag(api):
    as_json = api.get(READINGS, JANUARY)["ETag"]
    as_csv = api.get(READINGS, {**JANUARY, "format": "csv"})["ETag"]

    assert as_json != as_csv
    assert api.get(READINGS, {**JANUARY, "format": "csv"}, HTTP_IF_NONE_MATCH=as_json).status_code == 200


def test_each_page_has_its_own_etag(api):
    first = api.get(READINGS, JANUARY)
    second = api.get(first.json()["next"])

    assert first["ETag"] != second["ETag"]
    assert api.get(first.json()["next"], HTTP_IF_NONE_MATCH=second["ETag"]).status_code == 304


def test_a_range_that_has_not_ended_has_no_etag(api):
    response = api.get(READINGS, {"start": "2019-01-31", "end": "2999-01-01"}, HTTP_IF_NONE_MATCH="*")

    assert response.status_code == 200
    assert len(response.json()["readings"]) == 96
    assert "ETag" not in response


def test_errors_have_no_etag(api):
    response = api.get("/api/v1/meters/nope/readings/", JANUARY)

    assert response.status_code == 404
    assert "ETag" not in response

