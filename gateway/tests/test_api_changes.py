"""GET /api/v1/meters/{meter}/changes/ through a real gRPC server (WatchReadings, caught up and
ended): a feed that starts now, continues after its token exactly once, caps its answers and is
never cached."""
from datetime import UTC, datetime, timedelta

import pytest

# Transactional: the gRPC server writes and reads with its own connections.
pytestmark = pytest.mark.django_db(transaction=True)


def write(client, name: str, *pairs):
    response = client.post(f"/api/v1/meters/{name}/readings/", [{"time": t, "value": v} for t, v in pairs], format="json")
    assert response.status_code == 200, response.json()


def feed(client, name: str, after: str | None = None):
    response = client.get(f"/api/v1/meters/{name}/changes/", {} if after is None else {"after": after})
    assert response.status_code == 200, response.json()
    assert response["Cache-Control"] == "no-store"
    return response.json()


def test_the_feed_starts_now_and_continues_after_its_token(staff, new_meter):
    name = new_meter()
    write(staff, name, ("2019-01-01 00:15:00", 1.0))
    start = feed(staff, name)
    write(staff, name, ("2019-01-01 00:15:00", 1.0), ("2019-01-01 00:30:00", 2.0))
    write(staff, name, ("2019-01-01 00:30:00", 2.5))

    first = feed(staff, name, start["next"])
    again = feed(staff, name, start["next"])
    after = feed(staff, name, first["next"])

    assert (start["changes"], start["more"]) == ([], False)
    assert [(c["time"], c["value"], c["replaced"]) for c in first["changes"]] == [
        ("2019-01-01T00:30:00Z", 2.0, False), ("2019-01-01T00:30:00Z", 2.5, True),
    ]
    assert first["more"] is False
    assert again == first
    assert (after["changes"], after["more"]) == ([], False)
    commit = datetime.fromisoformat(first["changes"][0]["commit_time"])
    assert abs(commit - datetime.now(UTC)) < timedelta(minutes=1)


def test_an_answer_holds_at_most_ten_thousand_changes(staff, new_meter):
    name = new_meter()
    start = feed(staff, name)
    first_time = datetime(2019, 1, 1, tzinfo=UTC)
    times = [(first_time + timedelta(minutes=15 * i)).strftime("%Y-%m-%d %H:%M:%S") for i in range(12_000)]
    write(staff, name, *((t, float(i)) for i, t in enumerate(times)))

    first = feed(staff, name, start["next"])
    second = feed(staff, name, first["next"])

    assert (len(first["changes"]), first["more"]) == (10_000, True)
    assert (len(second["changes"]), second["more"]) == (2_000, False)
    assert [c["value"] for c in first["changes"] + second["changes"]] == [float(i) for i in range(12_000)]


def test_tokens_of_another_meter_or_none_at_all_are_refused(staff, new_meter):
    a, b = new_meter(), new_meter()
    token = feed(staff, a)["next"]

    other = staff.get(f"/api/v1/meters/{b}/changes/", {"after": token})
    forged = staff.get(f"/api/v1/meters/{a}/changes/", {"after": "not-a-token"})
    unknown = staff.get("/api/v1/meters/no-such-meter/changes/")

    assert (other.status_code, forged.status_code, unknown.status_code) == (400, 400, 404)
    assert [e["field"] for e in forged.json()["errors"]] == ["after"]
