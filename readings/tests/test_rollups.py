"""The hourly and daily rollups: aggregates read from them equal the raw computation for random
ranges, windows and zones, and every write keeps them in step with the raw readings."""
import importlib
from io import StringIO
import zoneinfo
from contextlib import contextmanager
from datetime import UTC, date, datetime
from unittest import mock

import numpy as np
import pytest
from django.core.management import CommandError, call_command
from django.db import connection
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from readings.domain import Window
from readings.generate import synthetic_readings, write_readings_csv
from readings.models import DailyRollup, HourlyRollup, Meter, Reading
from readings.sources.sql import rollups
from readings.sources.sql.source import SqlSource
from readings.windows import window_edges
from testing.helpers import import_file

pytestmark = pytest.mark.django_db

START = date(2019, 1, 1)
DAYS = 800
FIRST = 1546300800  # 2019-01-01T00:00:00Z
ZONES = ["UTC", "Europe/Berlin", "Asia/Kathmandu", "America/St_Johns", "Pacific/Chatham", "Australia/Lord_Howe"]


@pytest.fixture
def meter(tmp_path) -> Meter:
    """Two years and more of readings with gaps, rounded so that extremes tie, negative values
    among them, imported through the write path."""
    times, values = synthetic_readings(days=DAYS, start=START, seed=7)
    values = np.round(values, 1)
    values[::997] = -values[::997]
    path = tmp_path / "rolled.csv"
    write_readings_csv(path, times, values)
    import_file(path, meter="rolled")
    return Meter.objects.get(name="rolled")


@contextmanager
def rollups_always():
    with mock.patch.object(rollups, "ROLLUP_FROM_SECONDS", 0), mock.patch.object(rollups, "ROLLUP_PIECE_SECONDS", 0):
        yield


def from_rollups(meter: Meter, edges: np.ndarray):
    """From the rollups wherever a window holds a whole hour (the raw readings elsewhere)."""
    with rollups_always():
        return SqlSource(alias="default").aggregate(meter, edges=edges)


def from_raw(meter: Meter, edges: np.ndarray):
    with mock.patch.object(rollups, "aggregate", lambda *args: None):
        return SqlSource(alias="default").aggregate(meter, edges=edges)


def assert_same(rolled, raw):
    assert rolled.counts.tolist() == raw.counts.tolist()
    np.testing.assert_allclose(rolled.sums, raw.sums, rtol=1e-12, atol=1e-9)
    np.testing.assert_array_equal(rolled.mins, raw.mins)
    np.testing.assert_array_equal(rolled.maxs, raw.maxs)
    assert rolled.extremes == raw.extremes


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    start=st.integers(FIRST - 40 * 86_400, FIRST + (DAYS + 20) * 86_400),
    days=st.integers(0, 420),
    seconds=st.integers(0, 86_399),
    window=st.sampled_from([Window.HOUR, Window.DAY, Window.WEEK, Window.MONTH]),
    zone=st.sampled_from(ZONES),
)
def test_aggregates_from_rollups_equal_the_raw_computation(meter, start, days, seconds, window, zone):
    if window is Window.HOUR:
        days = min(days, 20)
    end = start + days * 86_400 + seconds + 1
    edges = window_edges(start=start, end=end, window=window, zone=zoneinfo.ZoneInfo(zone))

    assert_same(from_rollups(meter, edges), from_raw(meter, edges))


def test_a_long_range_of_days_is_read_from_the_rollups(meter):
    edges = window_edges(start=FIRST, end=FIRST + 365 * 86_400, window=Window.DAY, zone=zoneinfo.ZoneInfo("UTC"))
    pieces = rollups.plan(edges)

    assert pieces.worth_it()
    assert set(pieces.kinds.tolist()) == {rollups.DAILY}
    # Without its rollups the store answers only from the raw readings, which still hold.
    DailyRollup.objects.filter(meter=meter).delete()
    assert SqlSource(alias="default").aggregate(meter, edges=edges).counts.sum() == 0
    assert from_raw(meter, edges).counts.sum() > 30_000


def test_a_short_range_is_read_from_the_raw_readings():
    edges = window_edges(start=FIRST, end=FIRST + 31 * 86_400, window=Window.DAY, zone=zoneinfo.ZoneInfo("UTC"))

    assert not rollups.plan(edges).worth_it()


def test_late_corrections_and_new_readings_keep_the_rollups(meter, tmp_path):
    edges = window_edges(start=FIRST, end=FIRST + DAYS * 86_400, window=Window.MONTH, zone=zoneinfo.ZoneInfo("Europe/Berlin"))
    before = from_rollups(meter, edges)
    # Scattered rows (one in 2019, one in 2020, one in a gap-free hour), one of them a new lowest
    # value: the hours and days of just those rows are recomputed.
    corrections = tmp_path / "late.csv"
    corrections.write_text("time,meterusage\n2019-03-05 10:15:00,-500.5\n2020-06-30 23:45:00,123.25\n2020-11-01 00:00:00,7\n")
    import_file(corrections, meter="rolled")

    after = from_rollups(meter, edges)
    assert_same(after, from_raw(meter, edges))
    assert after.extremes.min_value == -500.5
    assert after.extremes.min_time == 1551780900  # 2019-03-05T10:15:00Z
    assert after.sums[2] != before.sums[2]


def test_a_reading_in_an_empty_hour_makes_its_rollups(meter, tmp_path):
    path = tmp_path / "new.csv"
    path.write_text("time,meterusage\n2030-01-01 12:30:00,4.5\n")
    import_file(path, meter="rolled")

    epoch = 1893501000  # 2030-01-01T12:30:00Z
    hour = HourlyRollup.objects.get(meter=meter, start=epoch - epoch % 3600)
    day = DailyRollup.objects.get(meter=meter, start=epoch - epoch % 86_400)
    assert (hour.count, hour.total, hour.low, hour.high) == (1, 4.5, 4.5, 4.5)
    assert (day.count, day.total) == (1, 4.5)


def rollup_rows(meter: Meter) -> dict:
    return {
        model.WIDTH: sorted(model.objects.filter(meter=meter).values_list("start", "count", "total", "low", "high"))
        for model in (HourlyRollup, DailyRollup)
    }


def assert_rows_close(a: dict, b: dict):
    for width in a:
        assert [row[:2] + row[3:] for row in a[width]] == [row[:2] + row[3:] for row in b[width]]
        np.testing.assert_allclose([row[2] for row in a[width]], [row[2] for row in b[width]], rtol=1e-12)


def test_rebuilt_rollups_equal_those_the_writes_kept(meter):
    kept = rollup_rows(meter)
    assert len(kept[3600]) > 19_000 and len(kept[86_400]) == DAYS

    rollups.rebuild_rollups([meter.pk])

    assert_rows_close(rollup_rows(meter), kept)


def test_the_migration_fills_the_rollups_of_readings_stored_before_it(meter):
    kept = rollup_rows(meter)
    HourlyRollup.objects.all().delete()
    DailyRollup.objects.all().delete()
    migration = importlib.import_module("readings.migrations.0014_rollups")

    with connection.cursor() as cursor:
        # What the migration asks of its schema editor (SQLite's cannot open inside a test's
        # transaction).
        editor = mock.Mock(connection=connection, execute=lambda sql, params=(): cursor.execute(sql, params))
        migration.fill_rollups(None, editor)

    assert_rows_close(rollup_rows(meter), kept)


def test_the_rebuild_command_restores_lost_rollups(meter):
    kept = rollup_rows(meter)
    HourlyRollup.objects.filter(meter=meter).delete()

    call_command("rebuild_rollups", "--meter", "rolled", stdout=StringIO())

    assert_rows_close(rollup_rows(meter), kept)
    with pytest.raises(CommandError, match="no such meter: nope"):
        call_command("rebuild_rollups", "--meter", "nope", stdout=StringIO())


def test_a_new_file_beside_readings_in_its_first_hour_counts_them_too(tmp_path):
    first = tmp_path / "first.csv"
    first.write_text("time,meterusage\n2040-01-01 00:00:00,1\n")
    import_file(first, meter="beside")
    # A file large enough to be inserted without comparing (its span holds no reading yet), whose
    # first hour and day already hold the reading above.
    times, values = synthetic_readings(days=200, start=date(2040, 1, 1), seed=3)
    write_readings_csv(tmp_path / "rest.csv", times[1:], values[1:])
    import_file(tmp_path / "rest.csv", meter="beside")

    meter = Meter.objects.get(name="beside")
    kept = rollup_rows(meter)
    epoch = 2208988800  # 2040-01-01T00:00:00Z
    in_hour = Reading.objects.filter(meter=meter, time__lt=datetime(2040, 1, 1, 1, tzinfo=UTC)).count()
    in_day = Reading.objects.filter(meter=meter, time__lt=datetime(2040, 1, 2, tzinfo=UTC)).count()
    assert in_hour > 1
    assert HourlyRollup.objects.get(meter=meter, start=epoch).count == in_hour
    assert DailyRollup.objects.get(meter=meter, start=epoch).count == in_day
    rollups.rebuild_rollups([meter.pk])
    assert_rows_close(rollup_rows(meter), kept)


def test_deleting_a_meter_deletes_its_rollups(meter):
    meter.delete()

    assert not HourlyRollup.objects.exists() and not DailyRollup.objects.exists()
