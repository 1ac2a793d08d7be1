"""The web tier's gRPC client: one channel per process and configuration, TLS and tokens passed
through, against real servers."""
import pytest
from django.test import override_settings

from gateway import client
from testing.helpers import self_signed_certificate

pytestmark = pytest.mark.django_db

HOUR = {"start": "2019-01-01T01:00:00Z", "end": "2019-01-01T02:00:00Z"}
READINGS = "/api/v1/meters/meterusage/readings/"


def test_one_channel_serves_every_call(api):
    first = client.connection()
    for _ in range(3):
        assert api.get(READINGS, HOUR).status_code == 200

    assert client.connection() is first


def test_a_new_target_gets_a_new_channel_and_the_old_one_is_closed(web_to_grpc, closed_port):
    first = client.connection()

    with override_settings(GRPC_TARGET=f"127.0.0.1:{closed_port}"):
        other = client.connection()

    assert other is not first and other.config.target == f"127.0.0.1:{closed_port}"
    assert client.connection() is not other
    assert client.connection().config.target == f"127.0.0.1:{web_to_grpc.port}"


def test_tls_with_a_root_certificate(api, tmp_path, settings, make_grpc_server):
    settings.API_CACHE_SECONDS = 0  # every request goes to the server: this is about the channel
    key, cert = self_signed_certificate(tmp_path)
    running = make_grpc_server(tls=(key.read_bytes(), cert.read_bytes()))
    with override_settings(GRPC_TARGET=running.target, GRPC_TLS_ROOT_CERT=str(cert)):
        assert [r["value"] for r in api.get(READINGS, HOUR).json()["readings"]] == [56.03, 55.77, 55.45, 55.74]
        assert client.service_status() == "SERVING"
    # Plaintext to a TLS server fails, and says the service is unavailable.
    with override_settings(GRPC_TARGET=running.target):
        response = api.get(READINGS, HOUR)
        assert (response.status_code, response.json()["grpc_code"]) == (503, "UNAVAILABLE")


@pytest.mark.parametrize(
    ("code", "status"),
    [("INVALID_ARGUMENT", 400), ("UNAUTHENTICATED", 401), ("PERMISSION_DENIED", 403), ("NOT_FOUND", 404),
     ("RESOURCE_EXHAUSTED", 503), ("UNAVAILABLE", 503), ("DEADLINE_EXCEEDED", 504), ("INTERNAL", 502),
     ("UNKNOWN", 502), ("UNIMPLEMENTED", 502)],
)
def test_status_of_each_grpc_code(code, status):
    import grpc

    from gateway.api.problems import http_status_of

    assert http_status_of(grpc.StatusCode[code]) == status
