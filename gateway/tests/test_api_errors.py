"""Every error is an application/problem+json document; gRPC codes map to HTTP statuses, with a real
server for each: a stopped one and an absent one (503), one that never answers (504), one that
wants a token (401)."""
import socket

import pytest

from accounts import access
from django.contrib.auth.models import User
from django.test import override_settings

from testing.helpers import problem

pytestmark = pytest.mark.django_db

READINGS = "/api/v1/meters/meterusage/readings/"
AGGREGATES = "/api/v1/meters/meterusage/aggregates/"
COMPLETENESS = "/api/v1/meters/meterusage/completeness/"
HOUR = {"start": "2019-01-01T01:00:00Z", "end": "2019-01-01T02:00:00Z"}


@pytest.mark.parametrize(
    ("url", "query", "errors"),
    [
        (READINGS, {}, [("start", "This field is required."), ("end", "This field is required.")]),
        (READINGS, {**HOUR, "start": "yesterday"},
         [("start", "must be an RFC 3339 time such as 2019-01-01T00:15:00Z, or a date such as 2019-01-01")]),
        (READINGS, {**HOUR, "end": "2019-02-30"}, [("end", "'2019-02-30' is not a date and time that exists")]),
        (READINGS, {**HOUR, "tz": "Mars/Olympus"},
         [("tz", "'Mars/Olympus' is not an IANA time zone such as Europe/Amsterdam")]),
        (READINGS, {**HOUR, "page_size": "0"}, [("page_size", "Ensure this value is greater than or equal to 1.")]),
        (READINGS, {**HOUR, "page_size": "many"}, [("page_size", "A valid integer is required.")]),
        (AGGREGATES, HOUR, [("window", "This field is required.")]),
        (AGGREGATES, {**HOUR, "window": "year"}, [("window", '"year" is not a valid choice.')]),
    ],
    ids=["no range", "bad start", "no such date", "unknown zone", "page size 0", "page size text", "no window", "unknown window"],
)
def test_invalid_parameters_are_named(api, url, query, errors):
    body = problem(api.get(url, query), 400)

    assert [(e["field"], e["description"]) for e in body["errors"]] == errors
    assert "grpc_code" not in body
    assert body["instance"] == url


@pytest.mark.parametrize(
    ("url", "query", "field", "description"),
    [
        (READINGS, {"start": HOUR["end"], "end": HOUR["start"]}, "end", "must be after the start of the range"),
        (READINGS, {**HOUR, "page_token": "forged"}, "page_token", "is not a token issued by this service"),
        (AGGREGATES, {"start": "2000-01-01", "end": "2019-01-01", "window": "15m"}, "end",
         "the range holds more than 100000 windows; use a wider window"),
        (COMPLETENESS, {"start": "1990-01-01", "end": "2019-01-01"}, "end",
         "the range holds 1016832 slots, more than 1000000"),
    ],
    ids=["reversed range", "forged token", "too many windows", "too many slots"],
)
def test_invalid_argument_is_400_with_the_field_violations(api, url, query, field, description):
    body = problem(api.get(url, query), 400)

    assert body["grpc_code"] == "INVALID_ARGUMENT"
    assert body["errors"] == [{"field": field, "description": description}]
    assert body["detail"] == f"{field}: {description}"


def test_a_token_from_another_range_is_refused(api):
    token = api.get(READINGS, {"start": "2019-01-01", "end": "2019-02-01", "page_size": 1}).json()["next_page_token"]

    body = problem(api.get(READINGS, {"start": "2019-01-01", "end": "2019-01-15", "page_token": token}), 400)

    assert body["errors"] == [
        {"field": "page_token", "description": "was issued for a request with other fields; send it with the same ones"}
    ]


def test_unknown_meter_is_404(api):
    body = problem(api.get("/api/v1/meters/nope/readings/", HOUR), 404)

    assert body["grpc_code"] == "NOT_FOUND"
    assert body["detail"] == "no meter named 'nope'"


def test_a_source_that_is_down_is_503(api):
    body = problem(api.get("/api/v1/meters/lost/readings/", HOUR), 503)

    assert body["grpc_code"] == "UNAVAILABLE"
    # Which store is down, not where it lives.
    assert body["detail"] == "CSV source 'broken' is unavailable; try again later"


def test_absent_grpc_server_is_503(api, closed_port):
    with override_settings(GRPC_TARGET=f"127.0.0.1:{closed_port}"):
        response = api.get(READINGS, HOUR)

    body = problem(response, 503)
    assert body["grpc_code"] == "UNAVAILABLE"
    assert body["detail"] == "the gRPC service is unavailable"
    assert str(closed_port) not in response.content.decode()
    assert body["title"] == "Service Unavailable"
    assert response["Retry-After"] == "5"


def test_stopped_grpc_server_is_503_and_a_new_one_is_found(api, make_grpc_server):
    running = make_grpc_server()
    with override_settings(GRPC_TARGET=running.target):
        assert api.get(READINGS, HOUR).status_code == 200
        running.stop(grace=0)

        assert problem(api.get(AGGREGATES, {**HOUR, "window": "hour"}), 503)["grpc_code"] == "UNAVAILABLE"
        assert problem(api.get(COMPLETENESS, HOUR), 503)["grpc_code"] == "UNAVAILABLE"

        make_grpc_server(running.target)
        # The channel reconnects within its short backoff; no new channel is needed.
        statuses = set()
        while 200 not in statuses:
            statuses.add(api.get(READINGS, HOUR).status_code)
        assert statuses <= {200, 503}


def test_grpc_server_that_never_answers_is_504(api):
    # Accepts TCP connections (the kernel's backlog) but never speaks HTTP/2.
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        with override_settings(GRPC_TARGET=f"127.0.0.1:{silent.getsockname()[1]}", GRPC_DEADLINE_SECONDS=0.5):
            body = problem(api.get(READINGS, HOUR), 504)

    assert body["grpc_code"] == "DEADLINE_EXCEEDED"
    assert body["detail"] == "the gRPC service did not answer within 0.5 s"


def test_a_credential_the_service_refuses_is_a_401(api, make_grpc_server, monkeypatch):
    """The gateway sends its callers' credentials, signed and short-lived; one the service finds
    expired is refused as not valid."""
    running = make_grpc_server()
    with override_settings(GRPC_TARGET=running.target, API_CACHE_SECONDS=0):
        assert len(api.get(READINGS, HOUR).json()["readings"]) == 4
        monkeypatch.setattr(access, "USER_CREDENTIAL_SECONDS", -1)
        access.forget_resolved()
        body = problem(api.get(READINGS, HOUR), 401)
    assert body["grpc_code"] == "UNAUTHENTICATED"
    assert body["detail"] == "the signed-in user's credential has expired"


def test_unknown_meter_is_a_problem(api):
    body = problem(api.get("/api/v1/meters/nope/"), 404)

    assert body == {"type": "about:blank", "title": "Not Found", "status": 404, "grpc_code": "NOT_FOUND",
                    "detail": "no meter named 'nope'", "instance": "/api/v1/meters/nope/"}


def test_drf_not_found_is_a_problem(api):
    body = problem(api.get("/api/v1/import-runs/123456/"), 401)

    assert body["detail"] == "Authentication credentials were not provided."
    body = problem(api.get("/api/v1/meters/", {"page": 99}), 404)

    assert body == {"type": "about:blank", "title": "Not Found", "status": 404,
                    "detail": "Invalid page.", "instance": "/api/v1/meters/"}


def test_unknown_api_url_is_a_problem(api):
    body = problem(api.get("/api/v1/nothing-here/"), 404)

    assert body["detail"] == "no resource at this URL"


def test_unknown_host_is_a_problem(api):
    body = problem(api.get(READINGS, HOUR, HTTP_HOST="evil.example"), 400)

    assert body["detail"] == "the request cannot be read"


def test_method_not_allowed_is_a_problem(api):
    # Signed in: an anonymous PUT is refused before its method is looked at.
    api.force_authenticate(User(username="reader"))

    response = api.put(READINGS, {})

    body = problem(response, 405)
    assert body["detail"] == 'Method "PUT" not allowed.'
    assert response["Allow"] == "GET, POST, HEAD, OPTIONS"


def test_not_acceptable_is_a_problem(api):
    body = problem(api.get(READINGS, HOUR, HTTP_ACCEPT="application/xml"), 406)

    assert body["detail"] == "Could not satisfy the request Accept header."


def test_unknown_format_is_a_problem(api):
    problem(api.get(READINGS, {**HOUR, "format": "xml"}), 404)


def test_unexpected_error_is_a_500_problem(api, monkeypatch, caplog):
    from gateway.api import documents

    def broken(**kwargs):
        raise ZeroDivisionError("a bug")

    monkeypatch.setattr(documents, "reading_page", broken)

    body = problem(api.get(READINGS, HOUR), 500)

    assert body["detail"] == "the server failed to answer this request; the error is logged"
    assert "a bug" not in body["detail"]
    assert any(record.exc_info and record.exc_info[0] is ZeroDivisionError for record in caplog.records)
