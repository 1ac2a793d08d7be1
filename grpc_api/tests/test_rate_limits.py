"""Calls per client address and per key on a real gRPC server: past the rate RESOURCE_EXHAUSTED
with when to come back; the service's own token, the web tier's callers and health checks are not
counted."""
import grpc
import pytest
from django.contrib.auth.models import User
from google.rpc import error_details_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_status import rpc_status

from accounts.access import user_credential
from accounts.keys import create_key
from grpc_api.gen.meterusage.v1 import meter_usage_pb2 as pb
from grpc_api.gen.meterusage.v1 import meter_usage_pb2_grpc
from grpc_api.rate_limits import Buckets, address_of, parse_rate
from testing.helpers import JANUARY

pytestmark = pytest.mark.django_db

RATE = 5
SERVICE_TOKEN = "the-gateways-token"


@pytest.fixture
def limited(make_grpc_server, served_data, settings):
    settings.GRPC_AUTH_TOKENS = [*settings.GRPC_AUTH_TOKENS, SERVICE_TOKEN]
    server = make_grpc_server(rate_per_address=(RATE, 60.0), rate_per_key=(RATE, 60.0), rate_exempt_tokens=[SERVICE_TOKEN])
    return meter_usage_pb2_grpc.MeterUsageServiceStub(server.anonymous_channel), server


def test_past_its_rate_an_address_is_refused_with_when_to_come_back(limited):
    stub, server = limited
    request = pb.ListReadingsRequest(meter="meterusage", **JANUARY)
    for _ in range(RATE):
        stub.ListReadings(request)
    with pytest.raises(grpc.RpcError) as refused:
        stub.ListReadings(request)

    assert refused.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert "too many calls from this address" in refused.value.details()
    (detail,) = rpc_status.from_call(refused.value).details
    retry = error_details_pb2.RetryInfo()
    assert detail.Unpack(retry) and 0 < retry.retry_delay.ToMilliseconds() <= 60_000
    # A stream counts as a call too.
    with pytest.raises(grpc.RpcError) as streamed:
        list(stub.StreamReadings(pb.StreamReadingsRequest(meter="meterusage", **JANUARY)))
    assert streamed.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    # The service's own token and health checks are not counted.
    assert stub.ListReadings(request, metadata=[("authorization", f"Bearer {SERVICE_TOKEN}")]).readings
    health = health_pb2_grpc.HealthStub(server.channel)
    assert health.Check(health_pb2.HealthCheckRequest()).status == health_pb2.HealthCheckResponse.SERVING


@pytest.mark.django_db(transaction=True)
def test_past_its_rate_a_key_is_refused_wherever_it_calls_from(limited, served_data):
    stub, _ = limited
    user = User.objects.create_user("ann")
    (_, first), (_, second) = create_key(user=user), create_key(user=user)
    request = pb.ListReadingsRequest(meter="meterusage", **JANUARY)

    def call(key: str) -> grpc.StatusCode:
        try:
            stub.ListReadings(request, metadata=[("authorization", f"Bearer {key}")])
            return grpc.StatusCode.OK
        except grpc.RpcError as error:
            return error.code()

    assert [call(first) for _ in range(RATE + 1)] == [grpc.StatusCode.OK] * RATE + [grpc.StatusCode.RESOURCE_EXHAUSTED]
    # Another key of the same user, and the address without a key, have their own budgets; the
    # web tier's callers are counted by the web tier.
    assert call(second) == grpc.StatusCode.OK
    assert stub.ListReadings(request).readings
    web_caller = user_credential(user)
    assert all(call(web_caller) == grpc.StatusCode.OK for _ in range(RATE + 1))


def test_a_bucket_refills_at_the_rate():
    now = [0.0]
    buckets = Buckets(2, 60.0, clock=lambda: now[0])
    assert buckets.take("a") == 0 and buckets.take("a") == 0
    assert buckets.take("a") == pytest.approx(30.0)
    assert buckets.take("b") == 0  # addresses are counted apart
    now[0] = 30.0
    assert buckets.take("a") == 0


@pytest.mark.parametrize("text, rate", [("", None), ("600/minute", (600, 60.0)), ("5/second", (5, 1.0))])
def test_rates_are_read_as_the_api_writes_them(text, rate):
    assert parse_rate(text) == rate


@pytest.mark.parametrize("text", ["600", "0/minute", "5/fortnight", "-1/second"])
def test_a_malformed_rate_is_refused(text):
    with pytest.raises(ValueError, match="is not a rate"):
        parse_rate(text)


@pytest.mark.parametrize("peer, address", [
    ("ipv4:127.0.0.1:50000", "127.0.0.1"), ("ipv6:[::1]:50000", "::1"), ("unix:/tmp/socket", "unix:/tmp/socket"),
])
def test_the_address_of_a_peer(peer, address):
    assert address_of(peer) == address
