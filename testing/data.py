"""Data fixtures (a pytest plugin, loaded by conftest.py): the reference file, the generated
meters, CSV files of a test's own, new meters, and the committed data the module gRPC servers serve.
"""
import csv
import itertools
import math
import os
from dataclasses import dataclass
from datetime import date
from pathlib import Path

import pytest
from django.db import connections
from django.test import override_settings

from readings.generate import synthetic_readings, write_readings_csv
from readings.models import ImportRun, Meter, Write
from testing.helpers import REPO, import_file, require

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


@pytest.fixture
def new_meter():
    """Makes meters of the relational store, "meter-0", "meter-1", ...; returns each one's name."""
    names = itertools.count()

    def make(time_zone: str = "UTC", **fields) -> str:
        return Meter.objects.create(name=f"meter-{next(names)}", time_zone=time_zone, **fields).name

    return make


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
        # Demo data: public, so any caller reads it. Who sees what is tested on meters of its own
        # (accounts/tests/test_access_matrix.py).
        Meter.objects.update(public=True)
        yield files
        Meter.objects.all().delete()
        ImportRun.objects.all().delete()
        Write.objects.all().delete()
