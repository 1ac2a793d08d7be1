"""seed_influx against a real influxd: exact points, idempotence, the mirror, failures."""
import math
import os
import re
import subprocess
import sys
import time

import numpy as np
import pytest
import requests
from django.core.management import CommandError, call_command

from readings.models import ImportRun, Meter, Reading
from readings.sources.influx import InfluxSource
from readings.sources.influx.client import InfluxClient, InfluxSettings, line_protocol
from testing.data import REFERENCE_READINGS, csv_readings
from testing.helpers import HEADER, REPO
from testing.influxd import ADMIN

pytestmark = pytest.mark.django_db


def seed(*args, **options) -> str:
    from io import StringIO

    out = StringIO()
    call_command("seed_influx", *map(str, args), stdout=out, stderr=StringIO(), **options)
    return out.getvalue()


def points(influxd, database: str, meter: str = "meterusage") -> list[tuple[int, float]]:
    result = influxd.query(f"SELECT value FROM meter_usage WHERE meter = '{meter}'", database)["results"][0]
    return [tuple(v) for v in result["series"][0]["values"]] if "series" in result else []


def test_reference_file_gives_every_point(influxd, influx_database, reference):
    output = seed(reference.path)

    assert "2974 points written to InfluxDB; relational mirror: 2974 inserted" in output
    stored = points(influxd, influx_database)
    expected = reference.values()
    assert len(stored) == REFERENCE_READINGS
    assert math.fsum(v for _, v in stored) == math.fsum(expected)
    assert sorted(v for _, v in stored) == sorted(expected)
    assert stored[0] == (1546301700, 55.09)  # 2019-01-01T00:15:00Z
    assert Reading.objects.count() == 2974
    assert Meter.objects.get().source == "influxdb"
    run = ImportRun.objects.get()
    assert (run.target, run.status, run.points_written, run.rows_skipped) == ("influxdb", "succeeded", 2974, 1)


def test_seeding_twice_changes_nothing(influxd, influx_database, reference_csv):
    seed(reference_csv)
    before = points(influxd, influx_database)

    output = seed(reference_csv)

    assert "relational mirror: 0 inserted, 0 updated, 2974 unchanged" in output
    assert points(influxd, influx_database) == before


def test_from_db_gives_the_same_points(influxd, influx_database, reference_csv, settings):
    seed(reference_csv)
    first = points(influxd, influx_database)
    influxd.query('CREATE DATABASE "from_db"')
    settings.INFLUXDB = influxd.settings("from_db")
    try:
        output = seed(from_db=True)
        assert "meter 'meterusage': 2974 points written to InfluxDB" in output
        assert points(influxd, "from_db") == first
    finally:
        influxd.query('DROP DATABASE "from_db"')


def test_no_mirror_leaves_the_relational_store_alone(influxd, influx_database, reference_csv):
    output = seed(reference_csv, no_mirror=True)

    assert "2974 points written to InfluxDB; 1 skipped (NaN at line 1548)" in output
    assert not Reading.objects.exists()
    assert len(points(influxd, influx_database)) == 2974


def test_dry_run_writes_nothing(influxd, influx_database, reference_csv):
    output = seed(reference_csv, dry_run=True)

    assert output.startswith("Dry run, nothing written")
    assert points(influxd, influx_database) == []
    assert not Reading.objects.exists()


def test_invalid_file_writes_no_point(influxd, influx_database, write_csv):
    path = write_csv(HEADER + "2019-01-01 00:15:00,1\n" * 1 + "2019-01-01 00:30:00,oops\n", "meterusage.csv")

    with pytest.raises(CommandError, match="line 3: meterusage 'oops' is not a number"):
        seed(path, no_mirror=True)

    assert points(influxd, influx_database) == []


def test_conflicting_duplicates_write_no_point(influxd, influx_database, write_csv):
    path = write_csv(HEADER + "2019-01-01 00:30:00,1\n2019-01-01 00:15:00,2\n2019-01-01 00:30:00,3\n", "m.csv")

    with pytest.raises(CommandError, match="lines 2 and 4 both give time 2019-01-01 00:30:00"):
        seed(path, no_mirror=True)

    assert points(influxd, influx_database, "m") == []


def test_missing_database_and_create_database(influxd, settings, reference_csv):
    settings.INFLUXDB = influxd.settings("not_there_yet")
    try:
        with pytest.raises(CommandError, match=f"InfluxDB at {influxd.url} has no database 'not_there_yet'"):
            seed(reference_csv)
        assert not Reading.objects.exists()

        seed(reference_csv, create_database=True)
        assert len(points(influxd, "not_there_yet")) == 2974
    finally:
        influxd.query('DROP DATABASE "not_there_yet"')


def test_wrong_credentials(influxd, influx_database, settings, reference_csv):
    settings.INFLUXDB = {**settings.INFLUXDB, "PASSWORD": "wrong"}

    with pytest.raises(CommandError, match=f"InfluxDB at {influxd.url} refused the credentials"):
        seed(reference_csv)

    run = ImportRun.objects.get()
    assert (run.status, run.points_written) == ("failed", 0)
    assert not Reading.objects.exists()


def test_unreachable_server(settings, reference_csv):
    from testing.influxd import free_port

    settings.INFLUXDB = {"URL": f"http://127.0.0.1:{free_port()}", "DATABASE": "x"}

    with pytest.raises(CommandError, match=r"InfluxDB at http://127.0.0.1:\d+ is unreachable: connection refused"):
        seed(reference_csv)


def test_rejected_write(influxd, influx_database, reference_csv):
    # A string `value` in the same shard makes InfluxDB refuse float values there.
    requests.post(
        f"{influxd.url}/write", params={"db": influx_database, "precision": "s"}, auth=ADMIN,
        data='meter_usage,meter=other value="text" 1546300800', timeout=5,
    ).raise_for_status()

    with pytest.raises(CommandError, match=f"InfluxDB at {influxd.url} rejected the request: 400 .*field type conflict"):
        seed(reference_csv)

    assert not Reading.objects.exists()
    run = ImportRun.objects.get()
    # The relational mirror rolled back: the run says nothing was inserted there.
    assert (run.status, run.rows_inserted, run.rows_updated, run.points_written) == ("failed", 0, 0, 0)


def test_points_written_count_each_reading_once(influxd, influx_database, write_csv):
    path = write_csv(HEADER + "2019-01-01 00:30:00,2\n2019-01-01 00:15:00,1\n2019-01-01 00:30:00,2\n")

    for no_mirror in (False, True):
        output = seed(path, meter="dup", no_mirror=no_mirror)

        assert "2 points written to InfluxDB" in output
        assert "1 skipped" in output
    assert points(influxd, influx_database, "dup") == [(1546301700, 1.0), (1546302600, 2.0)]
    assert [run.points_written for run in ImportRun.objects.order_by("started_at")] == [2, 2]


def test_tag_values_are_escaped(influxd, influx_database, settings):
    client = InfluxClient(InfluxSettings.from_settings())
    name = "site 1,main=a"
    client.write(line_protocol(name, np.array([1546300800, 1546301700]), np.array([1.5, 2.25])))

    series = InfluxSource(alias="influxdb").read(Meter(name=name), start=0, end=2_000_000_000, after=None, limit=10)

    assert series.times.tolist() == [1546300800, 1546301700]
    assert series.values.tolist() == [1.5, 2.25]
    assert points(influxd, influx_database, name) == [(1546300800, 1.5), (1546301700, 2.25)]


@pytest.mark.any_engine  # its seed runs on a SQLite file of its own
def test_stopping_influxd_mid_seed_then_running_again(influxd, tmp_path):
    """A seed cut off by an outage fails cleanly; once InfluxDB is back, running it again completes it."""
    database = "outage"
    influxd.query(f'CREATE DATABASE "{database}"')
    path = tmp_path / "big.csv"
    subprocess.run(
        [sys.executable, "manage.py", "generate_readings", "--days", "8000", "--out", str(path)],
        cwd=REPO, check=True, capture_output=True,
    )
    expected = sum(1 for _ in open(path)) - 1
    env = {
        **os.environ, "DATABASE_URL": f"sqlite:///{tmp_path / 'db.sqlite3'}", "INFLUXDB_URL": influxd.url,
        "INFLUXDB_DATABASE": database, "INFLUXDB_USERNAME": ADMIN[0], "INFLUXDB_PASSWORD": ADMIN[1],
    }
    subprocess.run([sys.executable, "manage.py", "migrate"], cwd=REPO, env=env, check=True, capture_output=True)
    command = [sys.executable, "manage.py", "seed_influx", str(path), "--meter", "big", "--batch-size", "500", "--no-mirror"]

    def count() -> int:
        result = influxd.query("SELECT count(value) FROM meter_usage", database)["results"][0]
        return result["series"][0]["values"][0][1] if "series" in result else 0

    try:
        seeding = subprocess.Popen(command, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        deadline = time.monotonic() + 60
        # Two batches stored: the first write has been answered, so the run has counted it.
        while count() < 2 * 500 and time.monotonic() < deadline:
            time.sleep(0.02)
        influxd.stop()
        _, error = seeding.communicate(timeout=60)
        assert seeding.returncode != 0
        # Stopping, influxd first fails writes (500), then refuses connections: both end the run.
        assert re.search(rf"InfluxDB at {influxd.url} (is unreachable|failed: 500)", error), error
        assert re.search(r"\(\d+ points written before it stopped\)", error), error
    finally:
        if influxd.process is None:
            influxd.start()

    assert 0 < count() < expected
    # Again in large batches: the run is cut off in small ones, and completing it needs no more.
    rerun = [*command[:command.index("--batch-size")], "--batch-size", "50000", "--no-mirror"]
    again = subprocess.run(rerun, cwd=REPO, env=env, capture_output=True, text=True)
    assert again.returncode == 0, again.stderr
    assert count() == expected
    stored = [v for _, v in points(influxd, database, "big")]
    assert len(stored) == expected
    assert math.fsum(stored) == math.fsum(v for _, v in csv_readings(path) if not math.isnan(v))
    influxd.query(f'DROP DATABASE "{database}"')


def test_extremes_of_values_python_prints_with_an_exponent(influxd, influx_database):
    client = InfluxClient(InfluxSettings.from_settings())
    client.write(line_protocol("tiny", np.array([1546300800, 1546301700, 1546302600]), np.array([5.0, 1e-05, 1.2345678901234567e19])))

    stats = InfluxSource(alias="influxdb").aggregate(Meter(name="tiny"), edges=np.array([1546300800, 1546303500]))
    extremes = stats.extremes

    assert (extremes.min_time, extremes.min_value) == (1546301700, 1e-05)
    assert (extremes.max_time, extremes.max_value) == (1546302600, 1.2345678901234567e19)
