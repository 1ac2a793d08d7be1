"""Readings, aggregates and completeness over HTTP, answered by a real gRPC server on port 0."""
import csv
import io
import math

import pytest

pytestmark = pytest.mark.django_db

READINGS = "/api/v1/meters/{}/readings/"
AGGREGATES = "/api/v1/meters/{}/aggregates/"
COMPLETENESS = "/api/v1/meters/{}/completeness/"
JANUARY = {"start": "2019-01-01T00:00:00Z", "end": "2019-02-01T00:00:00Z"}


def csv_rows(response) -> list[list[str]]:
    return list(csv.reader(io.StringIO(response.content.decode())))


def test_readings_of_an_hour_are_the_four_values(api):
    response = api.get(READINGS.format("meterusage"), {"start": "2019-01-01T01:00:00Z", "end": "2019-01-01T02:00:00Z"})

    assert response.status_code == 200
    assert response["Content-Type"] == "application/json"
    assert response.json() == {
        "meter": "meterusage",
        "start": "2019-01-01T01:00:00Z",
        "end": "2019-01-01T02:00:00Z",
        "readings": [
            {"time": "2019-01-01T01:00:00Z", "value": 56.03},
            {"time": "2019-01-01T01:15:00Z", "value": 55.77},
            {"time": "2019-01-01T01:30:00Z", "value": 55.45},
            {"time": "2019-01-01T01:45:00Z", "value": 55.74},
        ],
        "next": None,
        "next_page_token": "",
    }
    assert "Link" not in response


def test_offsets_are_read_as_instants(api):
    response = api.get(READINGS.format("meterusage"), {"start": "2019-01-01T02:00:00+01:00", "end": "2019-01-01T02:30:00+01:00"})

    assert [r["time"] for r in response.json()["readings"]] == ["2019-01-01T01:00:00Z", "2019-01-01T01:15:00Z"]


@pytest.mark.parametrize(
    ("query", "first", "last", "count"),
    [
        # The meter's zone (UTC): Jan 1 00:00 has no reading, so the day starts at 00:15.
        ({}, "2019-01-01T00:15:00Z", "2019-01-01T23:45:00Z", 95),
        ({"tz": "Europe/Amsterdam"}, "2019-01-01T00:15:00Z", "2019-01-01T22:45:00Z", 91),
    ],
)
def test_a_date_alone_is_local_midnight(api, query, first, last, count):
    response = api.get(READINGS.format("meterusage"), {"start": "2019-01-01", "end": "2019-01-02", **query})

    body = response.json()
    assert (body["readings"][0]["time"], body["readings"][-1]["time"], len(body["readings"])) == (first, last, count)


def test_a_local_time_is_read_in_the_zone(api):
    response = api.get(
        READINGS.format("meterusage"),
        {"start": "2019-01-01T02:00", "end": "2019-01-01T02:30", "tz": "Europe/Amsterdam"},
    )

    assert response.json()["start"] == "2019-01-01T01:00:00Z"
    assert [r["value"] for r in response.json()["readings"]] == [56.03, 55.77]


def test_paging_follows_next_links_to_every_reading(api):
    url, params, pages, readings = READINGS.format("meterusage"), {**JANUARY, "page_size": 1000}, [], []
    while url:
        response = api.get(url, params)
        assert response.status_code == 200
        body = response.json()
        pages.append(len(body["readings"]))
        readings += body["readings"]
        if body["next"]:
            assert response["Link"] == f'<{body["next"]}>; rel="next"'
            assert body["next"].startswith("http://testserver/api/v1/meters/meterusage/readings/?")
        url, params = body["next"], None

    assert pages == [1000, 1000, 974]
    assert len(readings) == 2974
    assert len({r["time"] for r in readings}) == 2974
    assert readings[0] == {"time": "2019-01-01T00:15:00Z", "value": 55.09}
    assert readings[-1] == {"time": "2019-01-31T23:45:00Z", "value": 54.36}
    assert [r["time"] for r in readings] == sorted(r["time"] for r in readings)


def test_csv_and_json_agree(api):
    query = {**JANUARY, "page_size": 10000}
    as_json = api.get(READINGS.format("meterusage"), query).json()
    as_csv = api.get(READINGS.format("meterusage"), {**query, "format": "csv"})

    assert as_csv.status_code == 200
    assert as_csv["Content-Type"] == "text/csv; charset=utf-8"
    assert as_csv["Content-Disposition"] == 'attachment; filename="meterusage-readings.csv"'
    rows = csv_rows(as_csv)
    assert rows[0] == ["time", "value"]
    assert len(rows) == 2975
    assert [(time, float(value)) for time, value in rows[1:]] == [(r["time"], r["value"]) for r in as_json["readings"]]


def test_accept_text_csv_gives_csv(api):
    response = api.get(
        READINGS.format("meterusage"), {"start": "2019-01-01T01:00:00Z", "end": "2019-01-01T01:30:00Z"},
        HTTP_ACCEPT="text/csv",
    )

    assert response.content == b"time,value\n2019-01-01T01:00:00Z,56.03\n2019-01-01T01:15:00Z,55.77\n"


def test_csv_pages_link_to_the_next(api):
    response = api.get(READINGS.format("meterusage"), {**JANUARY, "page_size": 2, "format": "csv"})

    assert csv_rows(response) == [["time", "value"], ["2019-01-01T00:15:00Z", "55.09"], ["2019-01-01T00:30:00Z", "54.64"]]
    link = response["Link"]
    assert link.startswith("<http://testserver/api/v1/meters/meterusage/readings/?") and link.endswith('>; rel="next"')
    assert "format=csv" in link and "page_token=" in link


def test_daily_aggregates_of_january_sum_to_the_file_total(api, reference):
    values = reference.values()

    response = api.get(AGGREGATES.format("meterusage"), {**JANUARY, "window": "day"})

    assert response.status_code == 200
    body = response.json()
    buckets = body["buckets"]
    assert (body["window"], body["time_zone"], len(buckets)) == ("day", "UTC", 31)
    assert buckets[0]["start"] == "2019-01-01T00:00:00Z" and buckets[-1]["end"] == "2019-02-01T00:00:00Z"
    assert [b["count"] for b in buckets] == [95] + [96] * 15 + [95] + [96] * 14
    assert sum(b["count"] for b in buckets) == body["total"]["count"] == len(values) == 2974
    assert round(math.fsum(b["sum"] for b in buckets), 6) == round(math.fsum(values), 6)
    assert round(body["total"]["sum"], 6) == round(math.fsum(values), 6)
    assert body["total"]["min"] == min(values) and body["total"]["max"] == max(values)
    assert body["total"]["expected_count"] == 2976
    assert body["min_time"] and body["max_time"]


def test_aggregates_follow_the_zone_of_tz(api):
    response = api.get(
        AGGREGATES.format("meterusage"),
        {"start": "2019-01-01", "end": "2019-01-03", "window": "day", "tz": "Europe/Amsterdam"},
    )

    body = response.json()
    assert body["time_zone"] == "Europe/Amsterdam"
    assert [(b["start"], b["end"], b["count"]) for b in body["buckets"]] == [
        ("2018-12-31T23:00:00Z", "2019-01-01T23:00:00Z", 91),
        ("2019-01-01T23:00:00Z", "2019-01-02T23:00:00Z", 96),
    ]


def test_empty_windows_have_no_mean_min_or_max(api):
    response = api.get(AGGREGATES.format("meterusage"), {"start": "2018-12-31", "end": "2019-01-02", "window": "day"})

    empty, full = response.json()["buckets"]
    assert empty == {
        "start": "2018-12-31T00:00:00Z", "end": "2019-01-01T00:00:00Z", "count": 0, "expected_count": 96,
        "coverage": 0.0, "sum": 0.0, "mean": None, "min": None, "max": None,
    }
    assert full["count"] == 95 and full["mean"] == pytest.approx(full["sum"] / 95, rel=1e-15)


def test_aggregates_as_csv(api):
    as_json = api.get(AGGREGATES.format("meterusage"), {**JANUARY, "window": "week"}).json()
    response = api.get(AGGREGATES.format("meterusage"), {**JANUARY, "window": "week", "format": "csv"})

    rows = csv_rows(response)
    assert response["Content-Disposition"] == 'attachment; filename="meterusage-aggregates.csv"'
    assert rows[0] == ["start", "end", "count", "expected_count", "coverage", "sum", "mean", "min", "max"]
    assert [row[:4] for row in rows[1:]] == [
        [b["start"], b["end"], str(b["count"]), str(b["expected_count"])] for b in as_json["buckets"]
    ]
    assert [float(row[5]) for row in rows[1:]] == [b["sum"] for b in as_json["buckets"]]
    # 2019-01-01 is a Tuesday: a clipped first week, three whole ones, a clipped last one.
    assert [row[0] for row in rows[1:]] == [
        "2019-01-01T00:00:00Z", "2019-01-07T00:00:00Z", "2019-01-14T00:00:00Z", "2019-01-21T00:00:00Z",
        "2019-01-28T00:00:00Z",
    ]


def test_completeness_of_the_whole_data_finds_the_one_gap(api):
    response = api.get(COMPLETENESS.format("meterusage"), {"start": "2019-01-01T00:15:00Z", "end": "2019-02-01T00:00:00Z"})

    assert response.json() == {
        "meter": "meterusage",
        "start": "2019-01-01T00:15:00Z",
        "end": "2019-02-01T00:00:00Z",
        "interval_seconds": 900,
        "expected_count": 2975,
        "present_count": 2974,
        "missing_count": 1,
        "coverage": 2974 / 2975,
        "gap_count": 1,
        "gaps": [{"start": "2019-01-17T02:45:00Z", "end": "2019-01-17T03:00:00Z", "missing_count": 1}],
    }


def test_completeness_gaps_as_csv(api):
    response = api.get(COMPLETENESS.format("meterusage"), {**JANUARY, "format": "csv"})

    assert csv_rows(response) == [
        ["start", "end", "missing_count"],
        ["2019-01-01T00:00:00Z", "2019-01-01T00:15:00Z", "1"],
        ["2019-01-17T02:45:00Z", "2019-01-17T03:00:00Z", "1"],
    ]


def test_csv_meter_is_served_the_same(api):
    hour = {"start": "2019-01-01T01:00:00Z", "end": "2019-01-01T02:00:00Z"}

    from_sql = api.get(READINGS.format("meterusage"), hour).json()["readings"]
    from_csv = api.get(READINGS.format("meterusage-csv"), hour).json()["readings"]

    assert from_csv == from_sql


def test_browsable_api_renders_readings(api):
    response = api.get(READINGS.format("meterusage"), {"start": "2019-01-01T01:00:00Z", "end": "2019-01-01T01:30:00Z"}, HTTP_ACCEPT="text/html")

    assert response.status_code == 200
    assert response["Content-Type"] == "text/html; charset=utf-8"
    assert b"Readings of a meter in [start, end)" in response.content
    assert b"2019-01-01T01:15:00Z" in response.content


def test_fractions_of_a_second_count(api):
    half_past = api.get(READINGS.format("meterusage"), {"start": "2019-01-01T00:15:00Z", "end": "2019-01-01T00:15:00.5Z"})
    just_after = api.get(READINGS.format("meterusage"), {"start": "2019-01-01T00:15:00.000000001Z", "end": "2019-01-01T00:30:00.25Z"})

    assert [r["time"] for r in half_past.json()["readings"]] == ["2019-01-01T00:15:00Z"]
    assert half_past.json()["end"] == "2019-01-01T00:15:00.5Z"
    assert [r["time"] for r in just_after.json()["readings"]] == ["2019-01-01T00:30:00Z"]
