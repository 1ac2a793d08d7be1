"""API keys on the HTTP API (`Authorization: Bearer`), in front of a real gRPC server: a key signs
in as its user; a read key only reads; a key limited to meters reaches only those, any other meter
being as missing as one that is not; a revoked key is refused within half a second, by the web
tier and by a running gRPC server."""
import time
from io import StringIO

import grpc
import pytest
from django.contrib.auth.models import User
from django.core.management import call_command
from rest_framework.test import APIClient

from accounts.access import ACCESS_CACHE_SECONDS
from accounts.keys import create_key, revoke_key
from accounts.models import ApiKey
from grpc_api.gen.meterusage.v1 import meter_usage_pb2 as pb
from readings.models import Meter

pytestmark = pytest.mark.django_db(transaction=True)

ROW = b"time,meterusage\n2024-06-01 00:00:00,1.5\n"


def with_key(text: str) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {text}")
    return client


def write(client, meter: str):
    return client.post(f"/api/v1/meters/{meter}/readings/", ROW, content_type="text/csv")


@pytest.fixture
def operator(write_server):
    return User.objects.create_user("operator", is_staff=True)


def test_a_write_key_writes_and_a_read_key_does_not(operator, new_meter):
    meter = new_meter()
    _, writer = create_key(user=operator, scope=ApiKey.Scope.WRITE)
    _, reader = create_key(user=operator, scope=ApiKey.Scope.READ)

    assert write(with_key(writer), meter).status_code == 200
    refused = write(with_key(reader), meter)
    assert refused.status_code == 403
    assert refused.json()["detail"].endswith("may read but not write readings")
    assert with_key(reader).get("/api/v1/import-runs/").status_code == 200  # reads what its user may


def test_a_key_limited_to_meters_finds_no_other(operator, new_meter):
    mine, other = new_meter(), new_meter()
    _, text = create_key(user=operator, scope=ApiKey.Scope.WRITE, meters=Meter.objects.filter(name=mine))
    client = with_key(text)

    assert write(client, mine).status_code == 200
    assert write(client, other).status_code == 404
    assert write(client, "no-such-meter").status_code == 404  # the same answer as for a meter there is
    assert client.get("/api/v1/import-runs/").status_code == 403  # spans every meter


def test_a_revoked_or_malformed_key_is_refused_once_its_resolution_lapses(operator, new_meter):
    meter = new_meter()
    key, text = create_key(user=operator, scope=ApiKey.Scope.WRITE)
    assert write(with_key(text), meter).status_code == 200
    revoke_key(key.prefix)
    time.sleep(ACCESS_CACHE_SECONDS)

    refused = write(with_key(text), meter)
    assert refused.status_code == 401
    assert refused["WWW-Authenticate"]
    assert with_key("mu_nothing_here").get("/api/v1/import-runs/").status_code == 401


def test_on_a_running_grpc_server_a_revoked_key_stops_once_its_resolution_lapses(operator, new_meter, write_server):
    """The service keeps a resolved key ACCESS_CACHE_SECONDS (half a second): the first call after
    that is refused, whichever process revoked it."""
    meter = new_meter()
    key, text = create_key(user=operator, scope=ApiKey.Scope.READ)
    metadata = [("authorization", f"Bearer {text}")]
    stub = write_server.anonymous_stub
    assert stub.GetMeter(pb.GetMeterRequest(name=meter), metadata=metadata).name == meter

    call_command("apikey", "revoke", key.prefix, stdout=StringIO())
    time.sleep(ACCESS_CACHE_SECONDS)

    with pytest.raises(grpc.RpcError) as refused:
        stub.GetMeter(pb.GetMeterRequest(name=meter), metadata=metadata)
    assert refused.value.code() == grpc.StatusCode.UNAUTHENTICATED
    assert refused.value.details() == "the API key is not valid: unknown, revoked or expired"
