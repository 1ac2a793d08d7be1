"""Who may read and write which meter, on every path, for every kind of caller.

Three meters: acme's private `acme-main`, globex's private `globex-main` and globex's public
`open-meter`. Each caller asks every meter through every RPC (both streams, a watch, a watch resumed
from a token) and every HTTP endpoint (CSV export and the changes feed too), and writes to each.
What each caller may see and write is written out below, by hand, not computed by the rule under
test. A meter a caller may not see must be NOT_FOUND (404) in the very words a missing meter gets.
(MQTT publishes are refused by the broker: accounts/tests/test_mqtt_devices.py.)
"""
from dataclasses import dataclass
from datetime import timedelta

import grpc
import pytest
from django.contrib.auth.models import User
from rest_framework.test import APIClient

from accounts.access import forget_resolved, user_credential
from accounts.keys import create_key, revoke_key
from accounts.models import Account, ApiKey
from grpc_api.gen.meterusage.v1 import meter_usage_pb2 as pb
from readings.models import Meter
from readings.writes.live import readings_write, rows_by_meter
from testing.helpers import stored, ts

pytestmark = pytest.mark.django_db(transaction=True)

METERS = ("acme-main", "globex-main", "open-meter")
MISSING = "no-such-meter"
RANGE = {"start_time": ts("2019-01-01T00:00:00Z"), "end_time": ts("2019-01-02T00:00:00Z")}
HTTP_RANGE = {"start": "2019-01-01T00:00:00Z", "end": "2019-01-02T00:00:00Z"}

# What each caller sees and may write; None: its credential is refused outright.
SEES = {
    "owner": {"acme-main", "open-meter"},
    "member": {"acme-main", "open-meter"},
    "other account": {"globex-main", "open-meter"},
    "anonymous": {"open-meter"},
    "staff": set(METERS),
    "expired key": None,
    "revoked key": None,
    "key limited to another meter": {"open-meter"},
    "read key": {"acme-main", "open-meter"},
}
WRITES = {
    "owner": {"acme-main"},
    "member": {"acme-main"},
    "other account": {"globex-main", "open-meter"},
    "anonymous": set(),
    "staff": set(METERS),
    "expired key": set(),
    "revoked key": set(),
    "key limited to another meter": set(),  # open-meter is globex's: seen, not written
    "read key": set(),
}
CALLERS = list(SEES)


@dataclass
class Caller:
    name: str
    bearer: str | None  # gRPC credential (None: none)
    http: APIClient


@pytest.fixture
def world(write_server):
    acme, globex = Account.objects.create(name="acme"), Account.objects.create(name="globex")
    ann, bob, carl = (User.objects.create_user(name) for name in ("ann", "bob", "carl"))
    sam = User.objects.create_user("sam", is_staff=True, is_superuser=True)
    acme.members.add(ann, bob)
    globex.members.add(carl)
    Meter.objects.create(name="acme-main", account=acme)
    Meter.objects.create(name="globex-main", account=globex)
    Meter.objects.create(name="open-meter", account=globex, public=True)
    readings_write(rows_by_meter(
        [m for m in METERS for _ in range(4)],
        [f"2019-01-01 00:{15 * i:02d}:00" for _ in METERS for i in range(4)],
        [float(i) for _ in METERS for i in range(4)],
    ))
    assert all(len(stored(m)) == 4 for m in METERS)

    keys = {
        "owner": create_key(user=ann, scope=ApiKey.Scope.WRITE)[1],
        "other account": create_key(user=carl, scope=ApiKey.Scope.WRITE)[1],
        "staff": create_key(user=sam, scope=ApiKey.Scope.WRITE)[1],
        "expired key": create_key(user=ann, scope=ApiKey.Scope.WRITE, expires_in=timedelta(seconds=-1))[1],
        "revoked key": create_key(user=ann, scope=ApiKey.Scope.WRITE)[1],
        "key limited to another meter": create_key(
            user=ann, scope=ApiKey.Scope.WRITE, meters=[Meter.objects.get(name="open-meter")],
        )[1],
        "read key": create_key(user=ann, scope=ApiKey.Scope.READ)[1],
    }
    revoke_key(keys["revoked key"].split("_")[1])
    callers = {}
    for name in CALLERS:
        client = APIClient()
        if name in keys:
            client.credentials(HTTP_AUTHORIZATION=f"Bearer {keys[name]}")
            bearer = keys[name]
        elif name == "member":  # signed in: the web tier signs its credential for the service
            client.force_login(bob)
            bearer = user_credential(bob)
        else:
            bearer = None
        callers[name] = Caller(name, bearer, client)
    forget_resolved()
    return callers


def outcome(call) -> str:
    try:
        call()
        return "OK"
    except grpc.RpcError as error:
        return error.code().name


def grpc_calls(stub, meter: str, metadata) -> dict:
    """Every read of `meter` over gRPC, each a thunk."""
    return {
        "GetMeter": lambda: stub.GetMeter(pb.GetMeterRequest(name=meter), metadata=metadata),
        "ListReadings": lambda: stub.ListReadings(pb.ListReadingsRequest(meter=meter, **RANGE), metadata=metadata),
        "StreamReadings": lambda: list(stub.StreamReadings(pb.StreamReadingsRequest(meter=meter, **RANGE), metadata=metadata)),
        "AggregateReadings": lambda: stub.AggregateReadings(
            pb.AggregateReadingsRequest(meter=meter, window=pb.WINDOW_HOUR, **RANGE), metadata=metadata,
        ),
        "GetCompleteness": lambda: stub.GetCompleteness(pb.GetCompletenessRequest(meter=meter, **RANGE), metadata=metadata),
        "WatchReadings": lambda: list(stub.WatchReadings(
            pb.WatchReadingsRequest(meters=[meter], catch_up_only=True, start_time=RANGE["start_time"]),
            metadata=metadata, timeout=10,
        )),
    }


def expected(sees: set | None, meter: str) -> str:
    if sees is None:
        return "UNAUTHENTICATED"
    return "OK" if meter in sees else "NOT_FOUND"


@pytest.mark.parametrize("who", CALLERS)
def test_grpc(world, write_server, who):
    caller, sees, writes = world[who], SEES[who], WRITES[who]
    stub = write_server.anonymous_stub
    metadata = [("authorization", f"Bearer {caller.bearer}")] if caller.bearer else []
    staff = [("authorization", f"Bearer {world['staff'].bearer}")]
    wrong = []

    for meter in METERS:
        for rpc, call in grpc_calls(stub, meter, metadata).items():
            if (got := outcome(call)) != expected(sees, meter):
                wrong.append((rpc, meter, got))
        # A resume token of a watch someone who sees the meter opened names the meter too.
        (message,) = list(stub.WatchReadings(pb.WatchReadingsRequest(meters=[meter], catch_up_only=True), metadata=staff))
        resumed = pb.WatchReadingsRequest(meters=[meter], catch_up_only=True, resume_token=message.resume_token)
        if (got := outcome(lambda: list(stub.WatchReadings(resumed, metadata=metadata, timeout=10)))) != expected(sees, meter):
            wrong.append(("WatchReadings resumed", meter, got))

    try:
        listed = stub.ListMeters(pb.ListMetersRequest(page_size=100), metadata=metadata)
        names, total = {m.name for m in listed.meters}, listed.total_size
        if names != sees or total != len(sees):
            wrong.append(("ListMeters", sorted(names), total))
    except grpc.RpcError as error:
        if sees is not None or error.code() != grpc.StatusCode.UNAUTHENTICATED:
            wrong.append(("ListMeters", error.code().name))

    for meter in METERS:
        write = pb.WriteReadingsRequest(readings=[pb.ReadingInput(meter=meter, time=ts("2019-01-01T01:00:00Z"), value=9.0)])
        want = "OK" if meter in writes else (
            "UNAUTHENTICATED" if sees is None or who == "anonymous" else
            "NOT_FOUND" if meter not in sees else "PERMISSION_DENIED"
        )
        if (got := outcome(lambda: stub.WriteReadings(write, metadata=metadata))) != want:
            wrong.append(("WriteReadings", meter, got))
        if (len(stored(meter)) == 5) != (meter in writes):
            wrong.append(("stored after WriteReadings", meter, len(stored(meter))))

    assert wrong == []


@pytest.mark.parametrize("who", CALLERS)
def test_grpc_unseen_is_missing_word_for_word(world, write_server, who):
    caller, sees = world[who], SEES[who]
    if sees is None:
        return
    stub = write_server.anonymous_stub
    metadata = [("authorization", f"Bearer {caller.bearer}")] if caller.bearer else []
    for meter in set(METERS) - sees:
        for rpc in grpc_calls(stub, meter, metadata):
            with pytest.raises(grpc.RpcError) as unseen:
                grpc_calls(stub, meter, metadata)[rpc]()
            with pytest.raises(grpc.RpcError) as missing:
                grpc_calls(stub, MISSING, metadata)[rpc]()
            assert unseen.value.code() == missing.value.code() == grpc.StatusCode.NOT_FOUND
            assert unseen.value.details().replace(meter, MISSING) == missing.value.details()
            assert dict(unseen.value.trailing_metadata() or ()).keys() == dict(missing.value.trailing_metadata() or ()).keys()


HTTP_READS = {
    "meter": ("/api/v1/meters/{}/", {}),
    "readings": ("/api/v1/meters/{}/readings/", HTTP_RANGE),
    "readings as CSV": ("/api/v1/meters/{}/readings/", {**HTTP_RANGE, "format": "csv"}),
    "aggregates": ("/api/v1/meters/{}/aggregates/", {**HTTP_RANGE, "window": "hour"}),
    "completeness": ("/api/v1/meters/{}/completeness/", HTTP_RANGE),
    "changes": ("/api/v1/meters/{}/changes/", {}),
}
STATUS = {"OK": 200, "NOT_FOUND": 404, "UNAUTHENTICATED": 401, "PERMISSION_DENIED": 403}


@pytest.mark.parametrize("who", CALLERS)
def test_http(world, who):
    caller, sees, writes = world[who], SEES[who], WRITES[who]
    client = caller.http
    wrong = []

    for meter in METERS:
        for name, (path, query) in HTTP_READS.items():
            answer = client.get(path.format(meter), query)
            if answer.status_code != STATUS[expected(sees, meter)]:
                wrong.append((name, meter, answer.status_code))
            elif answer.status_code == 404:
                missing = client.get(path.format(MISSING), query)
                if answer.json()["detail"].replace(meter, MISSING) != missing.json()["detail"]:
                    wrong.append((name, meter, "unseen and missing answered differently"))

    listed = client.get("/api/v1/meters/", {"page_size": 100})
    if sees is None:
        if listed.status_code != 401:
            wrong.append(("meters list", listed.status_code))
    elif listed.status_code != 200 or {m["name"] for m in listed.json()["results"]} != sees or listed.json()["count"] != len(sees):
        wrong.append(("meters list", listed.status_code, listed.content[:200]))

    for meter in METERS:
        answer = client.post(f"/api/v1/meters/{meter}/readings/", [{"time": "2019-01-01 01:15:00", "value": 7}], format="json")
        want = 200 if meter in writes else (
            401 if sees is None or who == "anonymous" else 404 if meter not in sees else 403
        )
        if answer.status_code != want:
            wrong.append(("POST readings", meter, answer.status_code))
        if (len(stored(meter)) == 5) != (meter in writes):
            wrong.append(("stored after POST", meter, len(stored(meter))))

    assert wrong == []


@pytest.mark.parametrize("who", CALLERS)
def test_dashboard_and_admin(world, who):
    client = world[who].http
    dashboard = client.get("/")
    admin = client.get("/admin/readings/meter/")

    # The dashboard is a page for everyone; what it lists comes from the API (test_http).
    assert dashboard.status_code == 200
    # Admin is for staff signed in with a session (keys do not sign in to admin).
    assert admin.status_code == 302 and admin["Location"].startswith("/admin/login/")
    staff = APIClient()
    staff.force_login(User.objects.get(username="sam"))
    assert staff.get("/admin/readings/meter/").status_code == 200
