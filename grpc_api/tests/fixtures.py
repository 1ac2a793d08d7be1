"""A real gRPC server on 127.0.0.1 (free port) over committed data, shared by a test module.

The server answers from its own threads and database connections, so the data is committed
(not held in a test transaction) and removed when the module ends. Test modules still carry
`django_db`, which is what makes pytest-django create the test database.
"""
import time
from datetime import date
from io import StringIO

import grpc
import pytest
from django.core.management import call_command
from django.db import connections
from django.test import override_settings
from google.protobuf import timestamp_pb2

from grpc_api.gen.meterusage.v1 import meter_usage_pb2_grpc
from grpc_api.server import create_server
from readings.generate import synthetic_readings, write_readings_csv
from readings.models import ImportRun, Meter

# Generated meters span the 2019 autumn clock change in Amsterdam, for DST-aware windows.
GENERATED = {"gen-a": 0, "gen-b": 1}
GENERATED_START = date(2019, 9, 1)
GENERATED_DAYS = 120


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


@pytest.fixture(scope="module")
def served_data(django_db_setup, django_db_blocker, reference_csv, tmp_path_factory):
    """Meters in the relational store and the same files behind `csv` meters (name + "-csv")."""
    folder = tmp_path_factory.mktemp("served")
    files = {"meterusage-csv": str(reference_csv)}
    for name, index in GENERATED.items():
        times, values = synthetic_readings(days=GENERATED_DAYS, start=GENERATED_START, seed=42, meter_index=index)
        path = folder / f"{name}.csv"
        write_readings_csv(path, times, values)
        files[f"{name}-csv"] = str(path)
    sources = {
        "default": {"BACKEND": "readings.sources.sql.SqlSource"},
        "csv": {"BACKEND": "readings.sources.csv.CsvSource", "OPTIONS": {"FILES": files}},
        "broken": {"BACKEND": "readings.sources.csv.CsvSource", "OPTIONS": {"DIRECTORY": str(folder / "missing")}},
        # Its server comes from settings.INFLUXDB, which the `influx_meters` fixture points at influxd.
        "influxdb": {"BACKEND": "readings.sources.influx.InfluxSource"},
    }
    with django_db_blocker.unblock(), override_settings(READINGS_SOURCES=sources):
        name = str(connections["default"].settings_dict["NAME"])
        # Committed data, so it must land in the test database and nowhere else.
        assert name.startswith("test_") or "memory" in name, f"not a test database: {name}"
        call_command("import_readings", str(reference_csv), stdout=StringIO())
        for name in GENERATED:
            call_command("import_readings", files[f"{name}-csv"], "--tz", "Europe/Amsterdam", stdout=StringIO())
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
            call_command("seed_influx", path, "--meter", f"{name}-influx", "--tz", zone, "--no-mirror", stdout=StringIO())
        yield influxd
        Meter.objects.filter(name__endswith="-influx").delete()
    influxd.query(f'DROP DATABASE "{database}"')
