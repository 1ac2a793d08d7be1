"""Server fixtures (a pytest plugin, loaded by conftest.py): gRPC servers of this process on
127.0.0.1 (a free port) with a real channel, the web tier pointed at them, a live web server, and
the servers started as processes, as they are deployed.

- `grpc_server`, `channel`, `stub`: one server per module over `served_data` (committed data).
- `write_server`: one server per module over the test database, for transactional tests that
  write through it; the fixture sets the write token and points the web tier at it.
- `make_grpc_server(address, **options)`: a server of a test's own, with `create_server`'s
  options (tokens, TLS, workers...), stopped when the test ends unless the test stopped it.
"""
import os
import subprocess
import sys
import threading
import time
from contextlib import contextmanager
from pathlib import Path

import grpc
import pytest
import requests
from django.contrib.staticfiles.handlers import StaticFilesHandler
from django.test import override_settings
from django.test.testcases import LiveServerThread
from rest_framework.test import APIClient

from grpc_api.gen.meterusage.v1 import meter_usage_pb2 as pb
from grpc_api.gen.meterusage.v1 import meter_usage_pb2_grpc
from grpc_api.server import RunningServer, create_server
from testing.helpers import READER, REPO, WRITE_TOKEN, free_port, ts, wait_for

# ---- gRPC servers of this process ------------------------------------------------------------


class GrpcServer:
    """A started `create_server` server and a plaintext channel and stub to it (made when first
    used, so that a TLS server has none it does not need)."""

    def __init__(self, address: str = "127.0.0.1:0", **options):
        self.running: RunningServer = create_server(address, **options)
        self.port = self.running.port
        self.target = f"127.0.0.1:{self.port}"
        self.stopped = False
        self._channel: grpc.Channel | None = None

    @property
    def calls(self):
        return self.running.calls

    @property
    def health(self):
        return self.running.health

    @property
    def channel(self) -> grpc.Channel:
        """A channel whose calls read as the service (READ_TOKEN) unless they carry a credential."""
        if self._channel is None:
            self._channel = grpc.insecure_channel(self.target)
        return grpc.intercept_channel(self._channel, ServiceReader())

    @property
    def anonymous_channel(self) -> grpc.Channel:
        """A channel whose calls carry only the credentials they are given."""
        if self._channel is None:
            self._channel = grpc.insecure_channel(self.target)
        return self._channel

    @property
    def stub(self) -> meter_usage_pb2_grpc.MeterUsageServiceStub:
        return meter_usage_pb2_grpc.MeterUsageServiceStub(self.channel)

    @property
    def anonymous_stub(self) -> meter_usage_pb2_grpc.MeterUsageServiceStub:
        return meter_usage_pb2_grpc.MeterUsageServiceStub(self.anonymous_channel)

    def stop(self, grace: float | None = None) -> None:
        """Stop the server (gracefully within `grace` seconds) and close the channel; once."""
        if self.stopped:
            return
        self.stopped = True
        try:
            self.running.stop(grace=grace)
        finally:
            if self._channel is not None:
                self._channel.close()


class ServiceReader(grpc.UnaryUnaryClientInterceptor, grpc.UnaryStreamClientInterceptor):
    """Adds READER to calls without an `authorization` of their own."""

    def _details(self, details):
        metadata = list(details.metadata or ())
        if any(key == "authorization" for key, _ in metadata):
            return details
        return details._replace(metadata=[*metadata, *READER]) if hasattr(details, "_replace") else _Details(
            details.method, details.timeout, [*metadata, *READER], details.credentials,
            getattr(details, "wait_for_ready", None), getattr(details, "compression", None),
        )

    def intercept_unary_unary(self, continuation, details, request):
        return continuation(self._details(details), request)

    def intercept_unary_stream(self, continuation, details, request):
        return continuation(self._details(details), request)


class _Details(grpc.ClientCallDetails):
    def __init__(self, method, timeout, metadata, credentials, wait_for_ready, compression):
        self.method, self.timeout, self.metadata = method, timeout, metadata
        self.credentials, self.wait_for_ready, self.compression = credentials, wait_for_ready, compression


@pytest.fixture
def make_grpc_server():
    """Start a gRPC server of the test's own: `make_grpc_server(address="127.0.0.1:0", **options)`
    with the options of `create_server`; every one is stopped when the test ends."""
    started: list[GrpcServer] = []

    def make(address: str = "127.0.0.1:0", **options) -> GrpcServer:
        server = GrpcServer(address, **options)
        started.append(server)
        return server

    yield make
    for server in reversed(started):
        server.stop(grace=0)


@pytest.fixture(scope="module")
def grpc_server(served_data):
    server = GrpcServer(max_workers=20)
    yield server
    server.stop(grace=1)


@pytest.fixture(scope="module")
def channel(grpc_server):
    return grpc_server.channel


@pytest.fixture(scope="module")
def stub(channel):
    return meter_usage_pb2_grpc.MeterUsageServiceStub(channel)


@pytest.fixture(scope="module")
def write_grpc_server(django_db_setup, django_db_blocker):
    """A gRPC server over the test database for the whole module, 4 worker threads. Its threads
    write and read with their own connections: tests that use it are transactional."""
    server = GrpcServer(max_workers=4)
    yield server
    server.stop(grace=1)


@pytest.fixture
def write_server(write_grpc_server, settings):
    """The module's `write_grpc_server`, taking writes with WRITE_TOKEN, over the relational
    store alone, and the web tier pointed at it with the token (a gateway that may write)."""
    settings.GRPC_TARGET = write_grpc_server.target
    settings.GRPC_WRITE_TOKENS = [WRITE_TOKEN]
    settings.GRPC_WRITE_TOKEN = WRITE_TOKEN
    settings.READINGS_SOURCES = {"default": {"BACKEND": "readings.sources.sql.SqlSource"}}
    return write_grpc_server


@pytest.fixture
def staff(write_server):
    """An API client logged in as a staff user (who may write), in front of `write_server`."""
    from django.contrib.auth.models import User

    client = APIClient()
    client.force_login(User.objects.create_user("staff", is_staff=True))
    return client


@pytest.fixture(scope="module")
def web_to_grpc(grpc_server):
    """The web tier's GRPC_TARGET set to the module's gRPC server."""
    with override_settings(GRPC_TARGET=grpc_server.target):
        yield grpc_server


@pytest.fixture
def api(web_to_grpc):
    return APIClient()


@pytest.fixture
def closed_port() -> int:
    """A port on 127.0.0.1 that nothing listens on (it was free a moment ago)."""
    return free_port()


# ---- A web server in this process ------------------------------------------------------------


@contextmanager
def live_web_server():
    """A web server in this process (a thread per request), static files from the app folders;
    yields its URL."""
    server = LiveServerThread("127.0.0.1", StaticFilesHandler, port=0)
    server.daemon = True
    server.start()
    server.is_ready.wait()
    if server.error:
        raise server.error
    try:
        yield f"http://127.0.0.1:{server.port}"
    finally:
        server.terminate()


@pytest.fixture(scope="module")
def live_url(web_to_grpc):
    """A live web server whose gRPC server is the module's `grpc_server`."""
    with live_web_server() as url:
        yield url


# ---- Servers as processes, as they are deployed -----------------------------------------------


@pytest.fixture(scope="module")
def process_env(tmp_path_factory, reference_csv) -> dict:
    """The environment of servers started as processes: a SQLite file database of their own,
    migrated, with the reference month imported (as meter "meterusage", public)."""
    folder = tmp_path_factory.mktemp("processes")
    env = {
        **os.environ, "DATABASE_URL": f"sqlite:///{folder / 'db.sqlite3'}", "PYTHONUNBUFFERED": "1",
        "DJANGO_DEBUG": "false", "GRPC_HEALTH_CHECK_SECONDS": "0.2",
    }
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    for command in (["migrate", "--verbosity", "0"], ["import_readings", str(reference_csv), "--public"]):
        subprocess.run([sys.executable, "manage.py", *command], cwd=REPO, env=env, check=True, capture_output=True)
    return env


def start_process(command: list[str], env: dict, log: Path) -> subprocess.Popen:
    return subprocess.Popen(command, cwd=REPO, env=env, stdout=log.open("wb"), stderr=subprocess.STDOUT)


def start_grpc_server(env: dict, log: Path, *extra: str) -> tuple[subprocess.Popen, int]:
    """`manage.py grpcrunserver` on a free port; returns it and the port once it serves."""
    process = start_process([sys.executable, "manage.py", "grpcrunserver", "127.0.0.1:0", *extra], env, log)
    try:
        line = wait_for(lambda: next((l for l in log.read_text().splitlines() if l.startswith("Serving")), None), 30)
    except BaseException:
        stop_process(process)
        raise
    return process, int(line.split("127.0.0.1:")[1].split(" ")[0])


def start_grpc_server_on(env: dict, log, port: int):
    """grpcrunserver on a given port (a restart keeps the address clients know)."""
    process = start_process([sys.executable, "manage.py", "grpcrunserver", f"127.0.0.1:{port}", "--grace", "2"], env, log)
    try:
        wait_for(lambda: any(line.startswith("Serving") for line in log.read_text().splitlines()), 30)
    except BaseException:
        stop_process(process)
        raise
    return process, port


class ReconnectingWatcher(threading.Thread):
    """Watches `meters` on 127.0.0.1:`port` from the start of the change log, reconnecting with
    its last token whenever the stream ends; keeps every change it receives, in the order received."""

    def __init__(self, port: int, meters: list[str]):
        super().__init__(daemon=True)
        self.port = port
        self.meters = meters
        self.received: list[tuple] = []
        self.token = ""
        self.reconnects = 0
        self.stopping = threading.Event()

    def run(self):
        while not self.stopping.is_set():
            with grpc.insecure_channel(f"127.0.0.1:{self.port}") as channel:
                stub = meter_usage_pb2_grpc.MeterUsageServiceStub(channel)
                request = pb.WatchReadingsRequest(meters=self.meters, resume_token=self.token)
                if not self.token:
                    request.start_time.CopyFrom(ts("2000-01-01T00:00:00Z"))
                try:
                    self.call = stub.WatchReadings(request, wait_for_ready=True, timeout=120, metadata=READER)
                    for message in self.call:
                        self.received += [(c.meter, c.time.seconds, c.value, c.replaced) for c in message.changes]
                        self.token = message.resume_token
                        if self.stopping.is_set():
                            return
                except grpc.RpcError:
                    self.reconnects += 1
                    time.sleep(0.1)


def start_web_server(env: dict, log: Path) -> tuple[subprocess.Popen, int]:
    """gunicorn with meterproject/gunicorn.conf.py on a free port, once /healthz answers."""
    port = free_port()
    process = start_process(
        [sys.executable, "-m", "gunicorn", "-c", "meterproject/gunicorn.conf.py", "meterproject.wsgi"],
        {**env, "WEB_BIND": f"127.0.0.1:{port}"}, log,
    )

    def healthy():
        if process.poll() is not None:
            pytest.fail(f"gunicorn exited: {log.read_text()[-2000:]}")
        try:
            return requests.get(f"http://127.0.0.1:{port}/healthz", timeout=5).ok
        except requests.RequestException:
            return False

    try:
        wait_for(healthy, 60)
    except BaseException:
        stop_process(process)
        raise
    return process, port


def stop_process(process: subprocess.Popen) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
