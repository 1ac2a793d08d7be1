"""Fixtures of the HTTP API tests: the gateway pointed at the gRPC server of
grpc_api.tests.fixtures (over the same committed data as the gRPC tests)."""
import socket

import pytest
from django.test import override_settings
from rest_framework.test import APIClient


@pytest.fixture(scope="module")
def gateway(grpc_server):
    """The web gateway's GRPC_TARGET set to the module's gRPC server."""
    with override_settings(GRPC_TARGET=f"127.0.0.1:{grpc_server.port}"):
        yield grpc_server


@pytest.fixture
def api(gateway):
    return APIClient()


@pytest.fixture
def closed_port() -> int:
    """A port on 127.0.0.1 that nothing listens on (it was free a moment ago)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]
