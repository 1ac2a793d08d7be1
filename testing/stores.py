"""Store fixtures (a pytest plugin, loaded by conftest.py): an empty cache for every test, the
relational store's test database (a prepared one kept when DATABASE_TEST_NAME names it, and the
TimescaleDB or Citus cluster serving it), a real influxd with a database per test or the served
meters seeded into it, and a Mosquitto of the tests' own. In CI (`CI` set) a test whose server
cannot run fails instead of skipping.
"""
import itertools
import os
import shutil
import socket
import subprocess
from dataclasses import dataclass
from io import StringIO
from pathlib import Path

import pytest
from django.core.management import call_command
from django.test import override_settings

from readings.models import Meter
from testing.data import GENERATED
from testing.helpers import require, wait_for
from testing.influxd import InfluxServer, free_port
from testing.pgclusters import STATE, Cluster


@pytest.fixture(autouse=True)
def empty_cache():
    """Every test starts without cached answers or meters: they belong to the data of earlier tests."""
    from django.core.cache import cache

    from readings.selectors import forget_meters

    cache.clear()
    forget_meters()


# ---- The relational store's database ----------------------------------------------------------


@pytest.fixture(scope="session")
def django_db_keepdb(request) -> bool:
    """pytest-django's `--reuse-db`, implied when the settings name the test database
    (DATABASE_TEST_NAME): that database was prepared beforehand (a Citus cluster's, with its nodes
    registered in it) and must be used as it is, not dropped and created again."""
    from django.conf import settings

    return bool(request.config.getvalue("reuse_db") or settings.DATABASES["default"].get("TEST", {}).get("NAME"))


@pytest.fixture(scope="session")
def pg_cluster(django_db_setup, django_db_blocker) -> Cluster:
    """The cluster (testing/pgclusters.py) whose server holds the test database; skipped when the
    tests run elsewhere (SQLite, the machine's PostgreSQL)."""
    from django.db import connection

    if connection.vendor != "postgresql":
        pytest.skip("the test database is not on a TimescaleDB or Citus cluster of testing.pgclusters")
    with django_db_blocker.unblock(), connection.cursor() as cursor:
        cursor.execute("SHOW data_directory")
        root = Path(cursor.fetchone()[0]).parent
    if not (root / STATE).exists():
        pytest.skip("the test database is not on a TimescaleDB or Citus cluster of testing.pgclusters")
    return Cluster.load(root)


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
        Meter.objects.filter(name__endswith="-influx").update(public=True)  # demo data, as `served_data`
        yield influxd
        Meter.objects.filter(name__endswith="-influx").delete()
    influxd.query(f'DROP DATABASE "{database}"')


# ---- MQTT --------------------------------------------------------------------------------------


@dataclass
class MqttBroker:
    url: str
    port: int
    process: subprocess.Popen


def start_mosquitto(folder: Path, settings: str) -> MqttBroker:
    """A Mosquitto (Debian's `mosquitto` package) on a free loopback port with `settings` (lines
    of mosquitto.conf), logging to `folder`, once it answers; stop its `process` when done."""
    binary = shutil.which("mosquitto") or shutil.which("mosquitto", path="/usr/sbin:/usr/local/sbin")
    if not binary:
        require("mosquitto is not installed: apt-get install -y mosquitto (scripts/test does it when it can)")
    port, log = free_port(), folder / "mosquitto.log"
    config = folder / "mosquitto.conf"
    config.write_text(
        f"listener {port} 127.0.0.1\npersistence false\nlog_dest file {log}\n{settings}"
        # Started by root, Mosquitto would become its own user, who may not read the test's folder.
        + ("user root\n" if os.geteuid() == 0 else "")
    )
    process = subprocess.Popen([binary, "-c", str(config)], stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)

    def answers():
        if process.poll() is not None:
            pytest.fail(f"mosquitto exited: {log.read_text()[-2000:] if log.exists() else 'no log'}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return True
        except OSError:
            return False

    try:
        wait_for(answers, 15)
    except BaseException:
        process.kill()
        raise
    return MqttBroker(f"mqtt://127.0.0.1:{port}", port, process)


@pytest.fixture(scope="session")
def mqtt_broker(tmp_path_factory):
    """A Mosquitto of the tests' own, anonymous, on a free loopback port.

    Its own, not the machine's on 1883: no limit on queued messages (the default, 1000 a client,
    drops the rest while a consumer is down) and room for whole batches in flight.
    """
    broker = start_mosquitto(
        tmp_path_factory.mktemp("mosquitto"), "allow_anonymous true\nmax_queued_messages 0\nmax_inflight_messages 0\n",
    )
    try:
        yield broker
    finally:
        broker.process.terminate()
        broker.process.wait(timeout=10)
