"""Readings sources beyond what the gRPC tests compare: off-grid times, the CSV source's memory."""
from datetime import timedelta

import numpy as np
import pytest

from readings.models import Meter
from readings.selectors import reading_completeness
from readings.sources.base import jumps_of
from readings.sources.csv import CsvSource
from testing.helpers import HEADER, import_file

OFF_GRID = HEADER + "2019-01-01 00:07:00,1\n2019-01-01 00:22:00,2\n2019-01-01 00:37:00,3\n2019-01-01 01:07:00,4\n"
HOUR = 1546300800  # 2019-01-01T00:00:00Z


def test_off_grid_readings_fill_their_slot():
    jumps = jumps_of(np.array([HOUR + 420, HOUR + 1320, HOUR + 2220, HOUR + 4020]), 900)

    # Slots 00:00, 00:15, 00:30 and 01:00: the only gap is 00:45.
    assert (jumps.count, jumps.first, jumps.last, jumps.pairs) == (4, HOUR, HOUR + 3600, [(HOUR + 1800, HOUR + 3600)])


@pytest.mark.django_db
@pytest.mark.store
def test_completeness_of_off_grid_readings_agrees_with_itself(write_csv):
    import_file(write_csv(OFF_GRID, "offgrid.csv"))

    result = reading_completeness(meter_name="offgrid", start=HOUR, end=HOUR + 5400)

    assert (result.expected, result.present, result.missing) == (6, 4, 2)
    assert result.gaps == [(HOUR + 2700, HOUR + 3600, 1), (HOUR + 4500, HOUR + 5400, 1)]


def test_csv_source_keeps_only_the_files_it_may(tmp_path, monkeypatch):
    import readings.sources.csv as csv_source

    for i in range(3):
        (tmp_path / f"m{i}.csv").write_text(HEADER + f"2019-01-01 00:15:00,{i}\n")
    loaded = []
    real_load = csv_source._load
    monkeypatch.setattr(csv_source, "_load", lambda path, *args: loaded.append(path.name) or real_load(path, *args))
    source = CsvSource(alias="csv", DIRECTORY=str(tmp_path), FILES_KEPT=2)
    m0, m1, m2 = (Meter(name=f"m{i}", interval=timedelta(minutes=15)) for i in range(3))

    values = [source.series(meter).values.tolist() for meter in (m0, m1, m2, m2, m1, m0)]

    assert values == [[0.0], [1.0], [2.0], [2.0], [1.0], [0.0]]
    # m2 and m1 came from memory; m0 had been let go to keep two files, and was read again.
    assert loaded == ["m0.csv", "m1.csv", "m2.csv", "m0.csv"]
