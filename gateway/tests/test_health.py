"""/healthz answers while the process lives; /readyz checks the database and gRPC health."""
import pytest
from django.test import override_settings

pytestmark = pytest.mark.django_db


def test_healthz(client):
    response = client.get("/healthz")

    assert response.status_code == 200
    assert response.json() == {"status": "ok"}
    assert "no-cache" in response["Cache-Control"]


def test_ready_with_database_and_serving_grpc(client, web_to_grpc):
    response = client.get("/readyz")

    assert response.status_code == 200
    assert response.json() == {
        "status": "ready",
        "checks": {"database": {"ok": True}, "grpc": {"ok": True, "status": "SERVING"}},
    }


def test_not_ready_without_grpc(client, closed_port):
    with override_settings(GRPC_TARGET=f"127.0.0.1:{closed_port}"):
        response = client.get("/readyz")

    assert response.status_code == 503
    body = response.json()
    assert body["status"] == "not ready"
    assert body["checks"]["database"] == {"ok": True}
    # Which part is down, not where it lives.
    assert body["checks"]["grpc"] == {"ok": False, "error": "the gRPC service is unavailable"}
    assert str(closed_port) not in response.content.decode()


def test_not_ready_without_the_database_and_where_it_is_stays_in_the_log(client, web_to_grpc, monkeypatch, caplog):
    from django.db import OperationalError, connection

    def refuse(*args, **kwargs):
        raise OperationalError('connection to server at "db.internal" (10.0.0.7), port 5432 failed')

    monkeypatch.setattr(connection, "cursor", refuse)

    response = client.get("/readyz")

    assert response.status_code == 503
    assert response.json()["checks"]["database"] == {"ok": False, "error": "the relational store is unavailable"}
    assert "db.internal" not in response.content.decode()
    assert "db.internal" in caplog.text


def test_not_ready_while_grpc_shuts_down(client, make_grpc_server):
    running = make_grpc_server()
    running.health.enter_graceful_shutdown()
    with override_settings(GRPC_TARGET=running.target):
        response = client.get("/readyz")

    assert response.status_code == 503
    assert response.json()["checks"]["grpc"] == {"ok": False, "status": "NOT_SERVING"}
