"""Whatever a client sends, the answer is a 2xx or a 4xx problem document, never a 5xx."""
import pytest

pytestmark = pytest.mark.django_db

PROBLEM = "application/problem+json"


@pytest.mark.parametrize("page", ["110357550567", str(2**31), str(2**63)])
def test_a_page_far_past_the_end_is_not_found(api, page):
    response = api.get("/api/v1/meters/", {"page": page})

    assert response.status_code == 404
    assert response["Content-Type"] == PROBLEM
    assert response.json()["detail"] == "Invalid page."


def test_the_last_page_that_fits_is_asked_of_the_service(api):
    response = api.get("/api/v1/meters/", {"page": 2**31 // 100, "page_size": 100})

    assert response.status_code == 404  # the service's list ends long before
    assert response.json()["detail"] == "Invalid page."


@pytest.fixture
def writer(staff, new_meter):
    """A staff user's client of a gateway that may write, and an empty meter to write to."""
    staff.meter = new_meter()
    return staff


def post(client, body: bytes, content_type: str):
    return client.generic("POST", f"/api/v1/meters/{client.meter}/readings/", body, content_type=content_type)


def json_body(rows: int) -> bytes:
    readings = ",".join(f'{{"time":"2030-01-01T00:{i % 60:02d}:00Z","value":{i}}}' for i in range(rows))
    return f'{{"readings":[{readings}]}}'.encode()


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize(("rows", "status"), [(60_000, 400), (300_000, 413)])
def test_a_large_json_body_is_read_up_to_the_write_limit(writer, rows, status):
    response = post(writer, json_body(rows), "application/json")

    assert response.status_code == status, response.content[:300]
    assert response["Content-Type"] == PROBLEM


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize(
    ("body", "detail"),
    [
        (b"[" * 1000 + b"]" * 1000, "JSON parse error - arrays and objects are nested too deep"),
        (b'{"readings": [{"time": "2030-01-01T00:00:00Z", "value": 1' + b"0" * 5000 + b"}]}",
         "JSON parse error - a number has more than 4300 digits"),
        (b'{"readings": [{"time": "2030-01-01T00:00:00Z", "value": NaN}]}', "JSON parse error - "),
        (b"\xff\xfe{}", "JSON parse error - the body is not UTF-8 text (invalid byte at offset 0)"),
    ],
    ids=["nested 1000 deep", "a number of 5000 digits", "NaN", "not UTF-8"],
)
def test_json_that_cannot_be_read_is_a_400_in_the_apis_words(writer, body, detail):
    response = post(writer, body, "application/json")

    assert response.status_code == 400, response.content[:300]
    problem = response.json()
    assert problem["detail"].startswith(detail)
    assert "Error" not in problem["detail"] and "sys." not in problem["detail"]


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize(
    ("body", "detail"),
    [
        (b"time,meterusage\r2030-01-01 00:00:00,1\r2030-01-01 00:15:00,2\r", "line"),
        (b"time,meterusage\n2030-01-01 00:00:00," + b"1" * 200_000 + b"\n", "line 2:"),
        (b'time,meterusage\n2030-01-01 00:00:00,"1\n', "line 2:"),
    ],
    ids=["lines ending in CR alone", "a field over 128 KiB", "a quote left open"],
)
def test_csv_that_cannot_be_read_is_a_400_naming_the_line(writer, body, detail):
    response = post(writer, body, "text/csv")

    assert response.status_code == 400, response.content[:300]
    assert response["Content-Type"] == PROBLEM
    problem = response.json()
    assert problem["detail"].startswith(detail)
    assert "_csv" not in problem["detail"] and "Error" not in problem["detail"]


@pytest.mark.django_db(transaction=True)
def test_a_write_with_thousands_of_invalid_rows_lists_the_first_and_counts_them_all(writer):
    body = "time,meterusage\n" + "".join(f"not a time {i},{i}\n" for i in range(5000))

    response = post(writer, body.encode(), "text/csv")

    assert response.status_code == 400, response.content[:300]
    problem = response.json()
    assert problem["invalid_count"] == 5000
    assert [error["line"] for error in problem["errors"]] == list(range(2, 22))
    assert problem["detail"].startswith("5000 invalid rows, nothing written: line 2: time 'not a time 0' is not a")
    assert problem["detail"].endswith("; and 4995 more")


@pytest.mark.django_db(transaction=True)
def test_a_refusal_quotes_a_huge_value_in_short(writer):
    body = '{"readings": [{"time": "2030-01-01T00:00:00Z", "value": "' + "9" * 100_000 + 'x"}]}'

    response = post(writer, body.encode(), "application/json")

    assert response.status_code == 400, response.content[:300]
    assert len(response.content) < 2_000
    (error,) = response.json()["errors"]
    assert error["value"] == "9" * 40
