"""Arbitrary text in every query parameter and path parameter of every GET of the HTTP API, and in
the bodies of the write (JSON and CSV), through the gRPC service: never a 5xx, and every 4xx an
RFC 9457 problem document that quotes the input in short.

Text: NUL, astral and right-to-left characters, combining marks, 100,000-character strings, JSON
nested thousands deep, lines that end with a carriage return alone. The parameters come from the
OpenAPI schema: a new endpoint or parameter is covered without editing this file.
"""
import functools
import json
import os
from urllib.parse import quote

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from gateway.api.problems import PROBLEM_CONTENT_TYPE
from testing.arbitrary import arbitrary_texts, deep_json
from testing.helpers import problem, write_readings

# Transactional: the gRPC server writes with its own connections (see test_api_write.py).
pytestmark = pytest.mark.django_db(transaction=True)

EXAMPLES = int(os.environ.get("PROPERTY_EXAMPLES", "25"))
PROPERTY = settings(max_examples=EXAMPLES, deadline=None, database=None, suppress_health_check=list(HealthCheck))
# A problem document quotes what it refuses in short: it stays this small whatever came in.
PROBLEM_BYTES = 8192


texts = arbitrary_texts(
    "2019-01-01\x00", "\u202Eday\u202C", "%", "%ff", "&", "=", "#", "+", "-", "2019-01-01T00:00:00\x00Z",
    "2019-01-01 00:00:00\u00a0", "\U0001D7D0\U0001D7CE\U0001D7D1\U0001D7D7-01-01", "١٢٣٤-٠١-٠١", "9" * 5000,
    "1e999999", "-0", "NaN",
)


@functools.cache
def openapi_document() -> dict:
    from drf_spectacular.generators import SchemaGenerator
    from drf_spectacular.renderers import OpenApiJsonRenderer

    return json.loads(OpenApiJsonRenderer().render(SchemaGenerator().get_schema(request=None, public=True)))


# A valid value of each parameter the endpoints require, so that one parameter at a time carries
# the text; the path's {meter} and {id} are filled by the test.
REQUIRED = {"start": "2019-01-01T00:00:00Z", "end": "2019-01-02T00:00:00Z", "window": "day"}


def get_parameters() -> list[tuple[str, str, str]]:
    """(path template, where, name) of every parameter of every GET in the schema."""
    found = []
    for path, item in openapi_document()["paths"].items():
        for parameter in item.get("get", {}).get("parameters", []):
            found.append((path, parameter["in"], parameter["name"]))
    return sorted(found)


def required_query(path: str) -> dict:
    operation = openapi_document()["paths"][path]["get"]
    return {
        p["name"]: REQUIRED[p["name"]]
        for p in operation.get("parameters", []) if p["in"] == "query" and p.get("required")
    }


PARAMETERS = get_parameters()


def test_every_get_parameter_is_walked():
    names = {(path, name) for path, _, name in PARAMETERS}

    assert {
        ("/api/v1/meters/", "search"), ("/api/v1/meters/", "ordering"), ("/api/v1/meters/{meter}/readings/", "page_token"),
        ("/api/v1/meters/{meter}/readings/", "start"), ("/api/v1/meters/{meter}/aggregates/", "tz"),
        ("/api/v1/meters/{meter}/changes/", "after"), ("/api/v1/import-runs/", "meter"),
        ("/api/v1/rejected-messages/", "topic"), ("/api/v1/meters/{meter}/", "meter"),
    } <= names
    # Every required query parameter has a valid value to send beside the arbitrary one.
    for path in {path for path, _, _ in PARAMETERS}:
        operation = openapi_document()["paths"][path]["get"]
        required = {p["name"] for p in operation.get("parameters", []) if p["in"] == "query" and p.get("required")}
        assert required <= REQUIRED.keys(), (path, required - REQUIRED.keys())


@pytest.fixture
def meter(staff, write_server, new_meter):
    """A meter with a few readings, written through the service (so that an import run is kept)."""
    name = new_meter("Europe/Amsterdam")
    write_readings(write_server.stub, name, ("2019-01-01 00:15:00", 1.0), ("2019-01-01 00:30:00", 2.0))
    return name


def assert_answered(response, *, quoted_short: bool = True):
    """No 5xx; a 4xx is a problem document (small, when it quotes only what it refuses)."""
    assert response.status_code < 500, (response.status_code, response.content[:500])
    if response.status_code >= 400:
        assert response.headers["Content-Type"] == PROBLEM_CONTENT_TYPE, response.content[:300]
        body = json.loads(response.content)
        assert body["status"] == response.status_code and body["detail"]
        if quoted_short:
            assert len(response.content) < PROBLEM_BYTES, response.content[:300]


@pytest.mark.parametrize(("path", "where", "name"), PARAMETERS, ids=[f"{p}-{n}" for p, _, n in PARAMETERS])
@PROPERTY
@given(text=texts)
@example(text="\x00")
@example(text="\U0001F600" * 100_000)
@example(text=deep_json(5000, "object"))
@example(text="9" * 5000)  # page_size: int() refuses past 4,300 digits, and that was a 500
@example(text="0" * 5000 + "1")
def test_any_text_in_any_get_parameter_is_answered_without_a_server_error(staff, meter, path, where, name, text):
    fill = {"meter": meter, "id": "1"}
    query = required_query(path)
    if where == "path":
        fill[name] = text
    else:
        query[name] = text
    url = path.format(**{key: quote(value, safe="") for key, value in fill.items()})

    response = staff.get(url, query)

    # A path's text comes back as the problem's `instance`, which names the resource asked for.
    assert_answered(response, quoted_short=where != "path")


@pytest.mark.parametrize("raw", [
    "start=%ff&end=%fe", "start=%00&end=%", "tz=%E0%A4%A", "%%%", "=&=&", "start=2019-01-01&start=%F0%9F%98%80",
    "window=day&window=%00", "page_token=%C0%AF", "after=%ED%A0%80",
])
def test_query_strings_that_are_no_utf_8_are_answered_without_a_server_error(staff, meter, raw):
    for path in sorted({path for path, _, _ in PARAMETERS}):
        response = staff.get(path.format(meter=meter, id="1") + "?" + raw)

        assert_answered(response)


# ---- The write's bodies ------------------------------------------------------------------------

values = st.one_of(
    texts, st.none(), st.booleans(), st.integers(), st.integers(-(10**400), 10**400), st.floats(), st.lists(st.integers(), max_size=3),
)
readings = st.fixed_dictionaries({"time": st.one_of(texts, st.just("2019-01-02 00:00:00")), "value": values})
json_bodies = st.one_of(
    st.lists(readings, max_size=5).map(json.dumps),
    st.lists(readings, max_size=5).map(lambda items: json.dumps({"readings": items})),
    st.recursive(
        st.none() | st.booleans() | st.floats() | texts,
        lambda inner: st.lists(inner, max_size=3) | st.dictionaries(texts, inner, max_size=3), max_leaves=10,
    ).map(json.dumps),
    texts,
)


def csv_text(rows: list[tuple[str, str]], line_end: str) -> str:
    return line_end.join(["time,meterusage", *(f"{time},{value}" for time, value in rows)]) + line_end


csv_bodies = st.one_of(
    st.builds(
        csv_text,
        st.lists(st.tuples(st.one_of(texts, st.just("2019-01-02 00:00:00")), st.one_of(texts, st.just("1.5"))), max_size=5),
        st.sampled_from(["\n", "\r\n", "\r"]),
    ),
    texts.map(lambda text: "time,meterusage\n" + text),
    texts,
)


@PROPERTY
@given(body=json_bodies)
@example(body=deep_json(1500, "list"))
@example(body=deep_json(100_000, "object"))
@example(body='{"readings": ' + deep_json(1200, "list") + "}")
@example(body=json.dumps([{"time": "2019-01-02 00:00:00\x00", "value": "1\x00"}]))
@example(body=json.dumps([{"time": "\U0001F600" * 100_000, "value": "\U0001F600" * 100_000}]))
@example(body=json.dumps([{"time": "", "value": 2**70}, {"time": "2019-01-02 00:00:00", "value": 10**400}]))
def test_any_json_body_of_a_write_is_answered_without_a_server_error(staff, meter, body):
    response = staff.post(f"/api/v1/meters/{meter}/readings/", body.encode(), content_type="application/json")

    assert_answered(response)


@PROPERTY
@given(body=csv_bodies)
@example(body="time,meterusage\r2019-01-02 00:00:00,1\r2019-01-02 00:15:00,2\r")
@example(body="time,meterusage\n2019-01-02 00:00:00," + "9" * 200_000 + "\n")
@example(body="time,meterusage\n\"" + "x" * 200_000 + "\n")
@example(body="time,meterusage\n2019-01-02 00:00:00,\U0001F600\n")
@example(body="\ufefftime,meterusage\n\x00")
def test_any_csv_body_of_a_write_is_answered_without_a_server_error(staff, meter, body):
    response = staff.post(f"/api/v1/meters/{meter}/readings/", body.encode(), content_type="text/csv")

    assert_answered(response)


# ---- What these found --------------------------------------------------------------------------


@pytest.mark.parametrize(("path", "name", "description"), [
    ("/api/v1/meters/{meter}/aggregates/", "window", '"' + "x" * 238 + "…"),
    ("/api/v1/meters/", "ordering", '"' + "x" * 238 + "…"),
    ("/api/v1/import-runs/", "status", "Select a valid choice. " + "x" * 216 + "…"),
], ids=["DRF choice", "ordering", "django-filter choice"])
def test_a_refused_choice_is_quoted_in_short(staff, meter, path, name, description):
    # The whole value came back, 100,000 characters of it, in the detail and again in errors.
    query = {**required_query(path), name: "x" * 100_000}

    body = problem(staff.get(path.format(meter=meter), query), 400)

    assert body["errors"] == [{"field": name, "description": description}]


def test_a_csv_header_that_is_none_is_quoted_in_short(staff, meter):
    body = problem(staff.post(f"/api/v1/meters/{meter}/readings/", b"x" * 100_000, content_type="text/csv"), 400)

    assert body["errors"] == [{
        "field": "line 1", "description": "expected the header 'time,meterusage', found " + repr("x" * 40) + "… (100,000 characters)",
    }]


def test_a_refused_reading_with_an_integer_too_large_for_json_quotes_its_text(staff, meter):
    # 2**70 made the problem document fail to render (orjson writes 64-bit integers): a 500.
    body = problem(staff.post(
        f"/api/v1/meters/{meter}/readings/", json.dumps([{"time": "", "value": 2**70}]), content_type="application/json",
    ), 400)

    assert [(e["field"], e["description"], e["value"]) for e in body["errors"]] == [("readings[0]", "time is empty", str(2**70))]


def test_an_integer_value_past_a_float_is_an_infinite_value_as_in_a_file(staff, meter):
    # float(10**400) raised OverflowError: a 500.
    response = staff.post(
        f"/api/v1/meters/{meter}/readings/", json.dumps([{"time": "2019-01-02 00:00:00", "value": 10**400}]),
        content_type="application/json",
    )

    assert response.status_code == 200, response.content[:300]
    assert response.json()["skipped"] == 1
    assert response.json()["rejected"] == [{"index": 0, "value": str(10**400), "reason": "infinite value"}]
