"""Synthetic data: deterministic, shaped like a real load, importable."""
from datetime import date
from io import StringIO

import numpy as np
import pytest
from django.core.management import call_command

from readings.generate import synthetic_readings
from readings.models import Meter, Reading


def generate(tmp_path, *args) -> str:
    out = StringIO()
    call_command("generate_readings", *args, "--out", str(tmp_path / "site.csv"), stdout=out)
    return out.getvalue()


def test_same_seed_same_bytes_other_seed_other_bytes(tmp_path):
    first, second, other = tmp_path / "a", tmp_path / "b", tmp_path / "c"
    for folder, seed in [(first, "7"), (second, "7"), (other, "8")]:
        generate(folder, "--days", "14", "--seed", seed)

    assert (first / "site.csv").read_bytes() == (second / "site.csv").read_bytes()
    assert (first / "site.csv").read_bytes() != (other / "site.csv").read_bytes()


def test_one_file_per_meter_in_the_import_format(tmp_path):
    output = generate(tmp_path, "--meters", "3", "--days", "10", "--start", "2020-02-01")

    files = sorted(tmp_path.glob("site-*.csv"))
    assert [f.name for f in files] == ["site-001.csv", "site-002.csv", "site-003.csv"]
    lines = files[0].read_text().splitlines()
    assert lines[0] == "time,meterusage"
    assert lines[1].startswith("2020-02-01 00:")
    total = sum(len(f.read_text().splitlines()) - 1 for f in files)
    assert f"Wrote {total} readings for 3 meter(s)" in output
    # A few slots are missing on purpose, never more than 12 per ten days.
    assert 3 * (960 - 12) <= total < 3 * 960


def test_load_has_a_daily_and_weekly_shape():
    times, values = synthetic_readings(days=28, start=date(2019, 1, 7), seed=1)

    hours = (times.astype("datetime64[m]").astype(int) // 60) % 24
    weekday = (times.astype("datetime64[D]").astype(int) + 3) % 7
    assert values[(hours >= 18) & (hours < 21)].mean() > 1.3 * values[(hours >= 1) & (hours < 4)].mean()
    assert values[weekday < 5].mean() > 1.1 * values[weekday >= 5].mean()
    assert np.all(values > 0)
    assert np.all(np.diff(times).astype(int) % 900 == 0)


@pytest.mark.django_db
def test_generated_files_import_cleanly(tmp_path):
    generate(tmp_path, "--meters", "2", "--days", "3")

    for path in sorted(tmp_path.glob("site-*.csv")):
        call_command("import_readings", str(path), stdout=StringIO())

    assert list(Meter.objects.values_list("name", flat=True)) == ["site-001", "site-002"]
    expected = sum(len(p.read_text().splitlines()) - 1 for p in tmp_path.glob("site-*.csv"))
    assert Reading.objects.count() == expected


@pytest.mark.django_db
def test_wall_clock_data_of_a_dst_zone_imports_with_that_zone(tmp_path):
    # March to November 2019 in Amsterdam: a spring-forward and a fall-back night.
    generate(tmp_path, "--days", "250", "--start", "2019-03-01", "--tz", "Europe/Amsterdam")
    path = tmp_path / "site.csv"
    lines = path.read_text().splitlines()

    call_command("import_readings", str(path), "--tz", "Europe/Amsterdam", stdout=StringIO())

    assert not any(line.startswith("2019-03-31 02:") for line in lines)
    assert sum(line.startswith("2019-10-27 02:00:00") for line in lines) == 2
    assert Reading.objects.count() == len(lines) - 1
