"""The image built from the Dockerfile and run for real: `init`, `grpc` and `web` against the local
PostgreSQL and a real influxd, Docker's own health checks, graceful stops, the user the servers run
as, what the image holds and its size.

Needs root and Debian's docker.io. dockerd is started when none answers and left running (it is
cheap, and the next run saves its start); the images stay too, as the next run's build cache. Where
no python:3.11-slim-bookworm image is there, a stand-in is made from Debian's packages (cached in
/var/cache/meterusage-docker; see docker_engine.py). Containers use the host's network on free
loopback ports and are always removed. scripts/test runs this module in its PostgreSQL pass only;
`-m "not docker"` leaves it out.
"""
import csv
import json
import math
import os
import re
import shutil
import subprocess
import uuid
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import psycopg
import pytest
import requests

from meterproject.tests import docker_engine
from meterproject.tests.docker_engine import docker, logs, state
from testing.helpers import REPO, require, wait_for
from testing.influxd import ADMIN, free_port

pytestmark = pytest.mark.docker

IMAGE = "meterusage:test"
POSTGRES_SERVER = os.environ.get("TEST_POSTGRES_URL", "postgres://postgres@127.0.0.1:5432/postgres")
SECRET_KEY = "docker-image-test-key-" + "Zp4Kq8Wn2Rv6Tx1My5Lb9Hc3Jf7Gd0Se" * 2
APP_UID = "10001"
# Seconds `docker stop` waits before SIGKILL: more than the gRPC server's own grace (10 s).
STOP_TIMEOUT = 30
# The image's HEALTHCHECK command, probed more often than its 15 s so that the test is quick.
HEALTH_TIMING = ["--health-interval=2s", "--health-start-period=120s"]
# Measured 552 MB on the Debian stand-in base (217 MB of it); more means something crept in.
SIZE_BUDGET = 600_000_000
READINGS_IN_FILE = 2974
# What a developer's checkout may hold besides the code, planted in the build context: .dockerignore
# must keep every one of them out of the image.
LEFTOVERS = {
    ".env": "DJANGO_SECRET_KEY=a-key-that-must-not-leave-this-machine\n",
    ".env.production": "DJANGO_SECRET_KEY=another-key\n",
    "deploy/server.key": "-----BEGIN PRIVATE KEY-----\n",
    "server.pem": "-----BEGIN CERTIFICATE-----\n",
    ".git/HEAD": "ref: refs/heads/main\n",
    ".venv/pyvenv.cfg": "home = /usr/bin\n",
    "db.sqlite3": "", "db.sqlite3-wal": "",
    "data/meterusage.csv": "time,meterusage\n",
    "test-artifacts/dashboard.png": "",
    ".pytest_cache/v/cache/lastfailed": "{}\n",
    "readings/__pycache__/models.cpython-311.pyc": "",
    "staticfiles/left-over.css": "",
}


@pytest.fixture(scope="module")
def engine():
    how = "run them as root where Debian's docker.io is installed (CI does): sudo .venv/bin/python -m pytest -m docker"
    if os.geteuid() != 0:
        require(f"the Docker image tests need root (to start dockerd and make the base image); {how}")
    if not (shutil.which("docker") and shutil.which("dockerd")):
        require(f"docker and dockerd are not installed (apt-get install docker.io); {how}")
    if not docker_engine.engine_answers():
        docker_engine.start_dockerd()


@pytest.fixture(scope="module")
def build_context(tmp_path_factory) -> Path:
    """The checkout's files (tracked, and untracked but not ignored by git) plus LEFTOVERS."""
    context = tmp_path_factory.mktemp("docker-context")
    listed = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
                            cwd=REPO, capture_output=True, check=True).stdout.decode()
    for name in filter(None, listed.split("\0")):
        if (REPO / name).is_file():
            (context / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO / name, context / name)
    for name, content in LEFTOVERS.items():
        (context / name).parent.mkdir(parents=True, exist_ok=True)
        (context / name).write_text(content)
    return context


@pytest.fixture(scope="module")
def image(engine, build_context):
    docker_engine.ensure_base_image()
    docker_engine.build(build_context, IMAGE)
    return IMAGE


@pytest.fixture
def containers(image):
    started = docker_engine.Containers(image, prefix=f"meterusage-test-{os.getpid()}")
    yield started
    started.remove_all()


# --- Databases -----------------------------------------------------------------------------------


@contextmanager
def postgres_database():
    """A fresh PostgreSQL database on the test server, dropped afterwards; yields its URL."""
    name = f"meterusage_docker_{uuid.uuid4().hex[:12]}"
    try:
        server = psycopg.connect(POSTGRES_SERVER, autocommit=True, connect_timeout=5)
    except psycopg.OperationalError as exc:
        require(f"PostgreSQL is not reachable at {POSTGRES_SERVER} (TEST_POSTGRES_URL): {exc}")
    with server:
        server.execute(f'CREATE DATABASE "{name}"')
        try:
            yield urlunsplit(urlsplit(POSTGRES_SERVER)._replace(path=f"/{name}"))
        finally:
            server.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@contextmanager
def influx_database(influxd):
    name = f"docker_{uuid.uuid4().hex[:12]}"
    influxd.query(f'CREATE DATABASE "{name}"')
    try:
        yield name
    finally:
        influxd.query(f'DROP DATABASE "{name}"')


def sql_value(database_url: str, query: str, *params):
    with psycopg.connect(database_url) as connection:
        return connection.execute(query, params).fetchone()[0]


def readings_in_sql(database_url: str, meter: str = "meterusage") -> int:
    return sql_value(database_url, "SELECT count(*) FROM readings_reading r JOIN readings_meter m "
                                   "ON m.id = r.meter_id WHERE m.name = %s", meter)


def points_in_influx(influxd, database: str, meter: str | None = None) -> int:
    where = f" WHERE meter = '{meter}'" if meter else ""
    series = influxd.query(f"SELECT count(value) FROM meter_usage{where}", database)["results"][0].get("series")
    return series[0]["values"][0][1] if series else 0


@dataclass
class Stack:
    """The servers a container talks to, and the environment that points it at them."""
    database_url: str
    influx_database: str
    env: dict[str, str]


@contextmanager
def stack(influxd):
    with postgres_database() as database_url, influx_database(influxd) as influx_name:
        env = {
            "DJANGO_DEBUG": "false", "DJANGO_SECRET_KEY": SECRET_KEY,
            "DJANGO_ALLOWED_HOSTS": "127.0.0.1,localhost", "DATABASE_URL": database_url,
            "INFLUXDB_URL": influxd.url, "INFLUXDB_DATABASE": influx_name,
            "INFLUXDB_USERNAME": ADMIN[0], "INFLUXDB_PASSWORD": ADMIN[1],
        }
        yield Stack(database_url, influx_name, env)


def mount_reference(reference_csv: Path) -> list[str]:
    return ["--mount", f"type=bind,source={reference_csv},target=/data/meterusage.csv,readonly"]


def reference_readings(path: Path) -> dict[datetime, float]:
    """The reference file read independently of the app: UTC time → value, NaN rows left out."""
    with path.open(newline="") as file:
        rows = [(datetime.fromisoformat(row["time"]).replace(tzinfo=timezone.utc), float(row["meterusage"]))
                for row in csv.DictReader(file)]
    return {time: value for time, value in rows if not math.isnan(value)}


def utc(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


# --- init ----------------------------------------------------------------------------------------


def stored_counts(servers: Stack, influxd) -> dict[str, int]:
    return {
        "readings": readings_in_sql(servers.database_url),
        "points": points_in_influx(influxd, servers.influx_database, "meterusage"),
        "migrations": sql_value(servers.database_url, "SELECT count(*) FROM django_migrations"),
    }


def test_init_migrates_imports_and_seeds_and_a_second_run_changes_nothing(containers, influxd, reference_csv):
    with stack(influxd) as servers:
        first = containers.run("init", servers.env, *mount_reference(reference_csv))
        assert first.returncode == 0, first.stdout + first.stderr
        after_first = stored_counts(servers, influxd)
        second = containers.run("init", servers.env, *mount_reference(reference_csv))
        after_second = stored_counts(servers, influxd)

    assert "Applying readings.0001_initial... OK" in first.stdout
    assert "meter 'meterusage': 2974 inserted, 0 updated, 0 unchanged, 1 skipped (NaN at line 1548)" in first.stdout
    assert (after_first["readings"], after_first["points"]) == (READINGS_IN_FILE, READINGS_IN_FILE)
    assert second.returncode == 0, second.stdout + second.stderr
    assert "No migrations to apply." in second.stdout
    assert "meter 'meterusage': 0 inserted, 0 updated, 2974 unchanged, 1 skipped (NaN at line 1548)" in second.stdout
    assert after_second == after_first


def test_init_without_a_file_loads_demo_meters(containers, influxd):
    with stack(influxd) as servers:
        init = containers.run("init", servers.env)
        meters = sql_value(servers.database_url, "SELECT count(*) FROM readings_meter WHERE reading_count > 0")
        readings = sql_value(servers.database_url, "SELECT count(*) FROM readings_reading")
        points = points_in_influx(influxd, servers.influx_database)

    assert init.returncode == 0, init.stdout + init.stderr
    assert "No readings file at /data/meterusage.csv: loading generated demo meters." in init.stdout
    assert meters == 3
    assert readings > 0
    assert points == readings


# --- The image itself ----------------------------------------------------------------------------


@pytest.mark.parametrize("role", ["web", "grpc", "init"])
def test_production_settings_refuse_to_start_without_a_secret_key(containers, role):
    port = str(free_port())
    env = {"DJANGO_DEBUG": "false", "PORT": port, "WEB_BIND": f"127.0.0.1:{port}", "GRPC_ADDRESS": f"127.0.0.1:{port}",
           "DATABASE_URL": "postgres://postgres@127.0.0.1:5432/postgres"}

    refused = containers.run(role, env, timeout=120)

    assert refused.returncode != 0
    assert "DJANGO_SECRET_KEY is not set: set it in the environment" in refused.stdout + refused.stderr


def image_paths(image: str) -> set[str]:
    listing = docker("run", "--rm", "--network", "none", "--user", "0", "--entrypoint", "find", image,
                     "/", "-xdev", "(", "-path", "/proc", "-o", "-path", "/sys", ")", "-prune", "-o", "-print")
    return set(listing.stdout.splitlines())


def test_image_holds_the_app_and_its_wheels_only(image):
    paths = image_paths(image)
    app = {p for p in paths if p.startswith("/app/")}
    venv = {p for p in paths if p.startswith("/venv/") and ".dist-info/" not in p}
    programs = {p.rsplit("/", 1)[1] for p in paths if re.match(r"/(usr/)?(local/)?s?bin/", p)}
    environment = docker("image", "inspect", "--format", "{{json .Config.Env}}", image).stdout

    assert {"/app/manage.py", "/app/scripts/docker-entrypoint", "/app/scripts/healthcheck.py",
            "/app/staticfiles/vendor/uplot/uPlot.iife.min.js"} <= app
    # No secrets, local state, version control, tests or their leftovers came in with the context.
    assert {f"/app/{name}" for name in LEFTOVERS} & app == set()
    leftovers = {".git", ".env", ".venv", "data", "test-artifacts", ".pytest_cache", "tests", "conftest.py", "__pycache__"}
    assert {p for p in app if leftovers & set(p.split("/")) or p.endswith((".pem", ".key", ".sqlite3"))} == set()
    assert not re.search(r"SECRET|PASSWORD|TOKEN", environment), environment
    # Wheels only: no compiler, no pip (or its cache), no bytecode or test suites of the packages.
    assert programs & {"gcc", "cc", "c++", "g++", "clang", "ld", "make"} == set()
    assert {"python3", "id"} <= programs
    assert {p for p in paths if "/.cache/" in p} == set()
    assert {p for p in venv if re.search(r"/(pip|setuptools|__pycache__|tests)(/|$)", p)} == set()


def test_image_size_stays_within_its_budget(image, capsys):
    size = docker_engine.image_size(image)

    with capsys.disabled():
        print(f"\n{image}: {size / 1e6:.0f} MB ({size} bytes)")
    assert size < SIZE_BUDGET


# --- The servers ---------------------------------------------------------------------------------


@dataclass
class Deployment:
    grpc: str
    web: str
    ingest: str
    web_url: str
    topic_root: str
    mqtt_port: int
    stack: Stack

    @property
    def servers(self) -> tuple[str, str, str]:
        return self.grpc, self.web, self.ingest


@pytest.fixture(scope="module")
def deployment(image, influxd, reference_csv, mqtt_broker):
    """init, then the gRPC and the web server and the MQTT consumer, each healthy by Docker's own
    health check."""
    started = docker_engine.Containers(image, prefix=f"meterusage-test-{os.getpid()}-servers")
    grpc_port, web_port = free_port(), free_port()
    try:
        with stack(influxd) as servers:
            env = {**servers.env, "GRPC_TARGET": f"127.0.0.1:{grpc_port}"}
            init = started.run("init", env, *mount_reference(reference_csv))
            assert init.returncode == 0, init.stdout + init.stderr
            grpc_env = {**env, "ROLE": "grpc", "GRPC_ADDRESS": f"127.0.0.1:{grpc_port}"}
            started.run("grpc", grpc_env, *HEALTH_TIMING, detach=True)
            grpc = started.last()
            web_env = {**env, "ROLE": "web", "PORT": str(web_port), "WEB_BIND": f"127.0.0.1:{web_port}"}
            started.run("web", web_env, *HEALTH_TIMING, detach=True)
            web = started.last()
            topic_root = f"docker-test-{os.getpid()}"
            ingest_env = {**env, "ROLE": "ingest", "MQTT_URL": mqtt_broker.url,
                          "MQTT_TOPIC": f"{topic_root}/meters/+/readings", "MQTT_CLIENT_ID": f"{topic_root}-ingest"}
            started.run("ingest", ingest_env, *HEALTH_TIMING, detach=True)
            ingest = started.last()
            for container in (grpc, web, ingest):
                docker_engine.wait_until_healthy(container)
            yield Deployment(grpc, web, ingest, f"http://127.0.0.1:{web_port}", topic_root, mqtt_broker.port, servers)
    finally:
        started.remove_all()


def test_servers_turn_healthy_by_the_images_own_healthcheck(deployment, image):
    image_probe = docker("image", "inspect", "--format", "{{json .Config.Healthcheck.Test}}", image).stdout

    for container, role in zip(deployment.servers, ("grpc", "web", "ingest")):
        probe = docker("inspect", "--format", "{{json .Config.Healthcheck.Test}}", container).stdout
        health = state(container)["Health"]
        assert probe == image_probe == '["CMD","python","scripts/healthcheck.py"]\n'
        assert health["Status"] == "healthy"
        assert health["Log"][-1]["ExitCode"] == 0
        assert health["Log"][-1]["Output"].strip() == f"{role}: healthy"


def test_web_container_answers_the_reference_window(deployment, reference_csv):
    start, end = "2019-01-01T01:00:00Z", "2019-01-01T02:00:00Z"
    expected = [{"time": f"{time:%Y-%m-%dT%H:%M:%SZ}", "value": value}
                for time, value in sorted(reference_readings(reference_csv).items()) if utc(start) <= time < utc(end)]

    response = requests.get(f"{deployment.web_url}/api/v1/meters/meterusage/readings/",
                            params={"start": start, "end": end}, timeout=30)

    assert response.status_code == 200, response.text
    assert len(expected) == 4
    assert response.json()["readings"] == expected


def test_web_container_answers_a_day_aggregate(deployment, reference_csv):
    day = [value for time, value in reference_readings(reference_csv).items()
           if utc("2019-01-01T00:00:00Z") <= time < utc("2019-01-02T00:00:00Z")]

    response = requests.get(f"{deployment.web_url}/api/v1/meters/meterusage/aggregates/",
                            params={"start": "2019-01-01", "end": "2019-01-02", "window": "day", "tz": "UTC"}, timeout=30)

    assert response.status_code == 200, response.text
    [bucket] = response.json()["buckets"]
    assert (bucket["start"], bucket["end"]) == ("2019-01-01T00:00:00Z", "2019-01-02T00:00:00Z")
    assert bucket["count"] == len(day)
    assert bucket["sum"] == pytest.approx(math.fsum(day), abs=1e-9)


def test_a_reading_published_over_mqtt_is_served_by_the_web_container(deployment):
    """The ingest container commits what the broker hands it; the web container serves it (through
    the gRPC container)."""
    import paho.mqtt.publish

    paho.mqtt.publish.single(
        f"{deployment.topic_root}/meters/meterusage/readings",
        json.dumps({"readings": [{"time": "2019-02-01T00:00:00Z", "value": 12.5}, {"time": "2019-02-01T00:15:00Z", "value": "NaN"}]}),
        qos=1, hostname="127.0.0.1", port=deployment.mqtt_port,
    )
    url = f"{deployment.web_url}/api/v1/meters/meterusage/readings/"
    window = {"start": "2019-02-01T00:00:00Z", "end": "2019-02-02T00:00:00Z"}

    def served():
        response = requests.get(url, params=window, timeout=30)
        return response.ok and response.json()["readings"]

    assert wait_for(served, 60) == [{"time": "2019-02-01T00:00:00Z", "value": 12.5}]


def test_servers_run_as_the_unprivileged_user(deployment):
    for container in deployment.servers:
        uid = docker("exec", container, "id", "-u").stdout.strip()
        processes = docker("top", container, "-eo", "pid,uid,args").stdout.splitlines()[1:]
        assert uid == APP_UID
        assert processes and {line.split()[1] for line in processes} == {APP_UID}, processes


def test_docker_stop_ends_each_server_gracefully(deployment):
    """Runs last of the servers' tests: it stops them. Web first, as it calls the gRPC server."""
    exit_codes = {}
    for container in (deployment.ingest, deployment.web, deployment.grpc):
        docker("stop", "--time", str(STOP_TIMEOUT), container, timeout=STOP_TIMEOUT + 30)
        exit_codes[container] = state(container)["ExitCode"]
    grpc_log, web_log, ingest_log = logs(deployment.grpc), logs(deployment.web), logs(deployment.ingest)

    # 0, not 137 (killed when the stop timeout ran out) nor 143 (SIGTERM unhandled).
    assert exit_codes == {deployment.ingest: 0, deployment.web: 0, deployment.grpc: 0}
    assert "Stopped: every message received is committed and acknowledged." in ingest_log, ingest_log[-2000:]
    assert re.search(r"Stopping: NOT_SERVING, finishing calls for up to \d+s \.\.\.\n(.*\n)*Stopped\.\n", grpc_log), grpc_log[-2000:]
    assert "Handling signal: term" in web_log and "Shutting down: Master" in web_log, web_log[-2000:]
