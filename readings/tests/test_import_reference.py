"""Importing the reference month (January 2019, one NaN row) into the relational store."""
from datetime import UTC, datetime

import pytest

from readings.models import ImportRun, Meter, Reading
from testing.helpers import HEADER, import_file

pytestmark = [pytest.mark.django_db, pytest.mark.store]



def test_reference_file_imports_every_reading(reference_csv):
    output = import_file(reference_csv)

    assert "2974 inserted, 0 updated, 0 unchanged, 1 skipped (NaN at line 1548)" in output
    meter = Meter.objects.get()
    assert meter.name == "meterusage"
    readings = Reading.objects.filter(meter=meter).order_by("time")
    assert readings.count() == 2974
    assert readings.first().time == datetime(2019, 1, 1, 0, 15, tzinfo=UTC)
    assert readings.last().time == datetime(2019, 1, 31, 23, 45, tzinfo=UTC)
    assert not readings.filter(time=datetime(2019, 1, 17, 2, 45, tzinfo=UTC)).exists()
    assert (meter.reading_count, meter.first_reading_at, meter.last_reading_at) == (
        2974,
        datetime(2019, 1, 1, 0, 15, tzinfo=UTC),
        datetime(2019, 1, 31, 23, 45, tzinfo=UTC),
    )


def test_values_are_stored_exactly(reference):
    import_file(reference.path)

    expected = dict(reference.readings)
    stored = {r.time.strftime("%Y-%m-%dT%H:%M:%SZ"): r.value for r in Reading.objects.all()}
    assert stored == expected


def test_run_is_recorded_with_counts_and_rejected_row(reference_csv):
    import_file(reference_csv)

    run = ImportRun.objects.get()
    assert run.status == ImportRun.Status.SUCCEEDED
    assert run.meter.name == "meterusage"
    assert run.target == ImportRun.Target.SQL
    assert run.file_size == reference_csv.stat().st_size
    assert len(run.file_sha256) == 64
    assert (run.rows_read, run.rows_inserted, run.rows_updated, run.rows_unchanged) == (2975, 2974, 0, 0)
    assert (run.rows_skipped, run.rows_invalid) == (1, 0)
    assert run.rejected_rows == [{"line": 1548, "value": "NaN", "reason": "NaN", "kind": "skipped"}]
    assert run.finished_at >= run.started_at


def test_second_import_changes_nothing(reference_csv):
    import_file(reference_csv)
    before = list(Reading.objects.order_by("time").values_list("time", "value"))

    output = import_file(reference_csv)

    assert "0 inserted, 0 updated, 2974 unchanged, 1 skipped" in output
    assert list(Reading.objects.order_by("time").values_list("time", "value")) == before
    assert Meter.objects.get().reading_count == 2974
    assert ImportRun.objects.count() == 2


def test_changed_value_is_an_update(reference_csv, write_csv):
    import_file(reference_csv)
    text = reference_csv.read_text().replace("2019-01-01 01:00:00,56.03", "2019-01-01 01:00:00,60.5")
    changed = write_csv(text, "meterusage.csv")

    output = import_file(changed)

    assert "0 inserted, 1 updated, 2973 unchanged, 1 skipped" in output
    assert Reading.objects.get(time=datetime(2019, 1, 1, 1, tzinfo=UTC)).value == 60.5
    assert Reading.objects.count() == 2974


def test_dry_run_counts_and_saves_nothing(reference_csv):
    output = import_file(reference_csv, dry_run=True)

    assert "Dry run, nothing saved" in output
    assert "2974 inserted, 0 updated, 0 unchanged, 1 skipped" in output
    assert not Reading.objects.exists()
    assert not Meter.objects.exists()
    run = ImportRun.objects.get()
    assert run.dry_run and run.meter is None and run.rows_inserted == 2974


def test_meter_and_small_batches(reference_csv):
    output = import_file(reference_csv, meter="site-a", batch_size=7)

    assert "meter 'site-a': 2974 inserted" in output
    assert Meter.objects.get().name == "site-a"
    assert Reading.objects.count() == 2974


def test_verbose_output_lists_rejected_rows(reference_csv):
    output = import_file(reference_csv, verbosity=2)

    assert "line 1548: NaN (skipped)" in output


def test_the_data_version_moves_with_every_change_and_only_then(reference_csv, write_csv):
    import_file(reference_csv)
    after_first = Meter.objects.get().data_version
    import_file(reference_csv)
    after_same_again = Meter.objects.get().data_version
    import_file(write_csv(HEADER + "2019-01-01 00:15:00,1.5\n"), meter="meterusage")

    assert (after_first, after_same_again, Meter.objects.get().data_version) == (1, 1, 2)


def test_an_import_leaves_the_planner_statistics_current(reference_csv):
    from django.db import connection

    if connection.vendor != "postgresql":
        pytest.skip("SQLite plans the readings' index without statistics")

    def estimate() -> float:
        with connection.cursor() as cursor:
            cursor.execute("SELECT reltuples FROM pg_class WHERE oid = 'readings_reading'::regclass")
            return cursor.fetchone()[0]

    import_file(reference_csv)
    assert estimate() == Reading.objects.count() == 2974
    import_file(reference_csv)  # all unchanged: nothing added, no new statistics needed
    assert estimate() == 2974
