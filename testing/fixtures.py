"""Fixtures and helpers shared by every test module (a pytest plugin, loaded by conftest.py).

Servers are real: a gRPC server on 127.0.0.1 (free port) over committed data, an influxd on a
free loopback port. In CI (`CI` set) a test whose server cannot run fails instead of skipping.
"""
import csv
import itertools
import math
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from datetime import date
from io import StringIO
from pathlib import Path

import grpc
import pytest
import requests
from django.contrib.staticfiles.handlers import StaticFilesHandler
from django.core.management import call_command
from django.db import connections
from django.test import override_settings
from django.test.testcases import LiveServerThread
from google.protobuf import timestamp_pb2
from rest_framework.test import APIClient

from grpc_api.gen.meterusage.v1 import meter_usage_pb2 as pb
from grpc_api.gen.meterusage.v1 import meter_usage_pb2_grpc
from grpc_api.server import create_server
from readings.generate import synthetic_readings, write_readings_csv
from readings.models import ImportRun, Meter
from testing.influxd import InfluxServer, free_port

REPO = Path(__file__).resolve().parent.parent
HEADER = "time,meterusage\n"

# Figures of the reference file (January 2019), checked against the file itself by the
# `reference` fixture, so that these names stay true.
REFERENCE_ROWS = 2975
REFERENCE_READINGS = 2974
REFERENCE_NAN_LINE = 1548
REFERENCE_FIRST = "2019-01-01T00:15:00Z"
REFERENCE_LAST = "2019-01-31T23:45:00Z"

# Generated meters span the 2019 autumn clock change in Amsterdam, for DST-aware windows. Their
# files hold UTC wall times read as Amsterdam's: the hour that repeats there appears once and is
# read as its first pass (--ambiguous earlier), which leaves a gap of an hour that night.
GENERATED = {"gen-a": 0, "gen-b": 1}
GENERATED_START = date(2019, 9, 1)
GENERATED_DAYS = 120


@pytest.fixture(autouse=True)
def empty_cache():
    """Every test starts without cached answers or meters: they belong to the data of earlier tests."""
    from django.core.cache import cache

    from readings.selectors import forget_meters

    cache.clear()
    forget_meters()


def require(reason: str) -> None:
    """Fail in CI, where everything must be there; skip on a developer's machine."""
    if os.environ.get("CI"):
        pytest.fail(reason, pytrace=False)
    pytest.skip(reason)


def wait_for(predicate, timeout: float = 5.0):
    """Poll `predicate` until it returns something true, or fail after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = predicate()
        if result:
            return result
        time.sleep(0.02)
    pytest.fail(f"gave up waiting after {timeout}s")


def ts(text: str) -> timestamp_pb2.Timestamp:
    stamp = timestamp_pb2.Timestamp()
    stamp.FromJsonString(text)
    return stamp


def grpc_calls(method: str = "ListReadings") -> float:
    """Calls of `method` that gRPC servers of this process have answered, whatever their status."""
    from prometheus_client import REGISTRY

    return sum(
        sample.value
        for metric in REGISTRY.collect() if metric.name == "grpc_server_handled"
        for sample in metric.samples
        if sample.name == "grpc_server_handled_total" and sample.labels["grpc_method"].endswith(f"/{method}")
    )


def import_file(*paths, **options) -> str:
    """Run import_readings on `paths`; returns what it printed."""
    out = StringIO()
    call_command("import_readings", *map(str, paths), stdout=out, stderr=StringIO(), **options)
    return out.getvalue()


def self_signed_certificate(folder: Path) -> tuple[Path, Path]:
    """A key and a certificate for localhost and 127.0.0.1, made with openssl."""
    key, cert = folder / "key.pem", folder / "cert.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=localhost",
         "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1", "-keyout", key, "-out", cert],
        check=True, capture_output=True,
    )
    return key, cert


# The reference month as the range of a gRPC request.
JANUARY = {"start_time": ts("2019-01-01T00:00:00Z"), "end_time": ts("2019-02-01T00:00:00Z")}


def all_reading_pages(stub, **request) -> tuple[list[tuple[str, float]], int]:
    """Every reading ListReadings gives for `request`, page after page, and the number of calls."""
    readings, token, calls = [], "", 0
    while True:
        response = stub.ListReadings(pb.ListReadingsRequest(**request, page_token=token))
        readings += [(r.time.ToJsonString(), r.value) for r in response.readings]
        calls += 1
        token = response.next_page_token
        if not token:
            return readings, calls


# ---- The reference file ----------------------------------------------------------------------


def csv_readings(path: Path) -> list[tuple[str, float]]:
    """(RFC 3339 UTC time, value) of every row of a file of UTC times, NaN included, read with
    the csv module: independently of the project's reader."""
    with Path(path).open(newline="") as f:
        return [(r["time"].replace(" ", "T") + "Z", float(r["meterusage"])) for r in csv.DictReader(f)]


@dataclass(frozen=True)
class Reference:
    """The reference file as read with the csv module, independently of the project's reader."""

    path: Path
    rows: list[tuple[str, float]]  # (RFC 3339 UTC time, value) of every row, NaN included

    @property
    def readings(self) -> list[tuple[str, float]]:
        return [(t, v) for t, v in self.rows if not math.isnan(v)]

    def values(self, prefix: str = "") -> list[float]:
        """Values of the readings whose time starts with `prefix` (e.g. "2019-01-17")."""
        return [v for t, v in self.readings if t.startswith(prefix)]


@pytest.fixture(scope="session")
def reference_csv() -> Path:
    """The reference month, `$METERUSAGE_CSV` (or ../shared/data/meterusage.csv beside the repo)."""
    configured = os.environ.get("METERUSAGE_CSV")
    path = Path(configured) if configured else REPO.parent / "shared" / "data" / "meterusage.csv"
    if not path.is_file():
        require(f"reference data not found at {path}: set METERUSAGE_CSV to meterusage.csv")
    return path


@pytest.fixture(scope="session")
def reference(reference_csv) -> Reference:
    rows = csv_readings(reference_csv)
    found = Reference(reference_csv, rows)
    readings = found.readings
    nan_lines = [line for line, (_, v) in enumerate(rows, start=2) if math.isnan(v)]
    assert (len(rows), len(readings), nan_lines, readings[0][0], readings[-1][0]) == (
        REFERENCE_ROWS, REFERENCE_READINGS, [REFERENCE_NAN_LINE], REFERENCE_FIRST, REFERENCE_LAST,
    ), "the reference file is not the one these tests were written for"
    return found


@pytest.fixture
def write_csv(tmp_path):
    """Write bytes or text to a CSV file in a temporary folder and return its path."""

    def write(content: str | bytes, name: str = "meter.csv") -> Path:
        path = tmp_path / name
        path.write_bytes(content.encode() if isinstance(content, str) else content)
        return path

    return write


# ---- InfluxDB --------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def influxd(tmp_path_factory):
    """A real influxd on a free loopback port for the whole run (Debian's `influxdb` package)."""
    if not shutil.which("influxd"):
        require("influxd is not installed: apt-get install -y influxdb (scripts/test does it when it can)")
    server = InfluxServer(tmp_path_factory.mktemp("influxd"))
    server.start()
    yield server
    server.stop()


_databases = itertools.count(1)


@pytest.fixture
def influx_database(influxd, settings):
    """A fresh InfluxDB database for one test, set as settings.INFLUXDB; its name is returned."""
    name = f"test_{next(_databases)}"
    influxd.query(f'CREATE DATABASE "{name}"')
    settings.INFLUXDB = influxd.settings(name)
    yield name
    if influxd.process:
        influxd.query(f'DROP DATABASE "{name}"')


# ---- MQTT --------------------------------------------------------------------------------------


@dataclass
class MqttBroker:
    url: str
    port: int
    process: subprocess.Popen


@pytest.fixture(scope="session")
def mqtt_broker(tmp_path_factory):
    """A Mosquitto of the tests' own on a free loopback port (Debian's `mosquitto` package).

    Its own, not the machine's on 1883: no limit on queued messages (the default, 1000 a client,
    drops the rest while a consumer is down) and room for whole batches in flight.
    """
    binary = shutil.which("mosquitto") or shutil.which("mosquitto", path="/usr/sbin:/usr/local/sbin")
    if not binary:
        require("mosquitto is not installed: apt-get install -y mosquitto (scripts/test does it when it can)")
    folder = tmp_path_factory.mktemp("mosquitto")
    port = free_port()
    config = folder / "mosquitto.conf"
    config.write_text(
        f"listener {port} 127.0.0.1\nallow_anonymous true\npersistence false\n"
        "max_queued_messages 0\nmax_inflight_messages 0\n"
        f"log_dest file {folder / 'mosquitto.log'}\n"
    )
    process = subprocess.Popen([binary, "-c", str(config)], stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)

    def answers():
        if process.poll() is not None:
            pytest.fail(f"mosquitto exited: {(folder / 'mosquitto.log').read_text()[-2000:]}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return True
        except OSError:
            return False

    try:
        wait_for(answers, 15)
        yield MqttBroker(f"mqtt://127.0.0.1:{port}", port, process)
    finally:
        process.terminate()
        process.wait(timeout=10)


# ---- A gRPC server over committed data, and the web tier pointed at it ----------------------


@pytest.fixture(scope="module")
def served_data(django_db_setup, django_db_blocker, reference_csv, tmp_path_factory):
    """Meters in the relational store and the same files behind `csv` meters (name + "-csv").

    The server answers from its own threads and database connections, so the data is committed
    (not held in a test transaction) and removed when the module ends. Test modules still carry
    `django_db`, which is what makes pytest-django create the test database.
    """
    folder = tmp_path_factory.mktemp("served")
    files = {"meterusage-csv": str(reference_csv)}
    for name, index in GENERATED.items():
        times, values = synthetic_readings(days=GENERATED_DAYS, start=GENERATED_START, seed=42, meter_index=index)
        path = folder / f"{name}.csv"
        write_readings_csv(path, times, values)
        files[f"{name}-csv"] = str(path)
    sources = {
        "default": {"BACKEND": "readings.sources.sql.SqlSource"},
        "csv": {"BACKEND": "readings.sources.csv.CsvSource", "OPTIONS": {"FILES": files, "AMBIGUOUS": "earlier"}},
        "broken": {"BACKEND": "readings.sources.csv.CsvSource", "OPTIONS": {"DIRECTORY": str(folder / "missing")}},
        # Its server comes from settings.INFLUXDB, which the `influx_meters` fixture points at influxd.
        "influxdb": {"BACKEND": "readings.sources.influx.InfluxSource"},
    }
    with django_db_blocker.unblock(), override_settings(READINGS_SOURCES=sources):
        name = str(connections["default"].settings_dict["NAME"])
        # Committed data, so it must land in the test database and nowhere else.
        assert name.startswith("test_") or "memory" in name, f"not a test database: {name}"
        import_file(reference_csv)
        for name in GENERATED:
            import_file(files[f"{name}-csv"], time_zone="Europe/Amsterdam", ambiguous="earlier")
        Meter.objects.create(name="meterusage-csv", source="csv")
        for name in GENERATED:
            Meter.objects.create(name=f"{name}-csv", source="csv", time_zone="Europe/Amsterdam")
        Meter.objects.create(name="lost", source="broken")
        Meter.objects.create(name="orphan", source="retired")
        yield files
        Meter.objects.all().delete()
        ImportRun.objects.all().delete()


@pytest.fixture(scope="module")
def grpc_server(served_data):
    running = create_server("127.0.0.1:0", max_workers=20)
    yield running
    running.stop(grace=1)


@pytest.fixture(scope="module")
def channel(grpc_server):
    with grpc.insecure_channel(f"127.0.0.1:{grpc_server.port}") as channel:
        yield channel


@pytest.fixture(scope="module")
def stub(channel):
    return meter_usage_pb2_grpc.MeterUsageServiceStub(channel)


@pytest.fixture(scope="module")
def influx_meters(served_data, influxd, reference_csv, django_db_blocker):
    """The same files seeded into a real influxd, served by meters named <meter>-influx."""
    database = "grpc_served"
    influxd.query(f'CREATE DATABASE "{database}"')
    seeds = [("meterusage", str(reference_csv), "UTC")]
    seeds += [(name, served_data[f"{name}-csv"], "Europe/Amsterdam") for name in GENERATED]
    with django_db_blocker.unblock(), override_settings(INFLUXDB=influxd.settings(database)):
        for name, path, zone in seeds:
            call_command(
                "seed_influx", path, "--meter", f"{name}-influx", "--tz", zone, "--ambiguous", "earlier", "--no-mirror",
                stdout=StringIO(),
            )
        yield influxd
        Meter.objects.filter(name__endswith="-influx").delete()
    influxd.query(f'DROP DATABASE "{database}"')


@pytest.fixture(scope="module")
def web_to_grpc(grpc_server):
    """The web tier's GRPC_TARGET set to the module's gRPC server."""
    with override_settings(GRPC_TARGET=f"127.0.0.1:{grpc_server.port}"):
        yield grpc_server


@pytest.fixture
def api(web_to_grpc):
    return APIClient()


# ---- Servers as processes, as they are deployed -----------------------------------------------


@pytest.fixture(scope="module")
def process_env(tmp_path_factory, reference_csv) -> dict:
    """The environment of servers started as processes: a SQLite file database of their own,
    migrated, with the reference month imported (as meter "meterusage")."""
    folder = tmp_path_factory.mktemp("processes")
    env = {
        **os.environ, "DATABASE_URL": f"sqlite:///{folder / 'db.sqlite3'}", "PYTHONUNBUFFERED": "1",
        "DJANGO_DEBUG": "false", "GRPC_HEALTH_CHECK_SECONDS": "0.2",
    }
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    for command in (["migrate", "--verbosity", "0"], ["import_readings", str(reference_csv)]):
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
                    self.call = stub.WatchReadings(request, wait_for_ready=True, timeout=120)
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


# ---- The dashboard in headless Chromium ------------------------------------------------------

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--no-first-run",
]
ARTIFACTS = REPO / "test-artifacts"


@pytest.fixture(scope="module")
def live_url(web_to_grpc):
    """A web server in this process (a thread per request), static files from the app folders."""
    server = LiveServerThread("127.0.0.1", StaticFilesHandler, port=0)
    server.daemon = True
    server.start()
    server.is_ready.wait()
    if server.error:
        raise server.error
    yield f"http://127.0.0.1:{server.port}"
    server.terminate()


@pytest.fixture(scope="module")
def browser():
    """Debian's Chromium, headless, driven by Playwright (whose own browser download does not work here)."""
    if not Path(CHROMIUM).exists():
        require(f"Chromium not found at {CHROMIUM}: apt-get install -y chromium (scripts/test does it when it can)")
    from playwright.sync_api import sync_playwright

    # Playwright's sync API marks an event loop as running in this thread, so Django takes the
    # tests' ORM calls for async code (they are not) and gives them a database connection of
    # their own, which must be closed before the loop goes.
    with pytest.MonkeyPatch.context() as patch, sync_playwright() as playwright:
        patch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()
        connections.close_all()


@pytest.fixture
def page(browser, live_url):
    """A new page on the live server; it records the URLs it requested and fails the test on a
    script error."""
    context = browser.new_context(viewport={"width": 1400, "height": 1000}, base_url=live_url)
    page = context.new_page()
    page.requested = []
    page.on("request", lambda request: page.requested.append(request.url))
    page.errors = []
    page.on("pageerror", lambda error: page.errors.append(str(error)))
    # The page's Content-Security-Policy must let everything it does through.
    page.on("console", lambda message: "Content Security Policy" in message.text and page.errors.append(message.text))
    yield page
    context.close()
    assert page.errors == []


def expect_ready(page):
    from playwright.sync_api import expect

    expect(page.locator("#dashboard")).to_have_attribute("data-state", "ready")


def screenshot(page, name: str) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / name), full_page=True)


@pytest.fixture
def closed_port() -> int:
    """A port on 127.0.0.1 that nothing listens on (it was free a moment ago)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


__all__ = [
    "ARTIFACTS", "CHROMIUM", "MqttBroker", "GENERATED", "GENERATED_DAYS", "GENERATED_START", "HEADER", "JANUARY", "REFERENCE_FIRST", "REFERENCE_LAST",
    "REFERENCE_NAN_LINE", "REFERENCE_READINGS", "REFERENCE_ROWS", "REPO", "Reference", "all_reading_pages",
    "expect_ready", "csv_readings", "free_port", "import_file", "start_grpc_server", "start_web_server", "stop_process", "require", "screenshot", "self_signed_certificate", "ts",
    "wait_for",
]
