"""Window edges: days and weeks in a zone whose offset never changes are computed by arithmetic;
they must be the calendar's local midnights all the same."""
import random
import zoneinfo

import numpy as np
import pytest

from readings import windows
from readings.domain import MAX_EPOCH, MIN_EPOCH, Window


def by_the_calendar(start: int, end: int, window: Window, zone) -> np.ndarray:
    inner = [t for t in windows._calendar_boundaries(start, end, window, zone) if start < t < end]
    return np.array([start, *inner, end], dtype=np.int64)


@pytest.mark.parametrize("key", ["UTC", "Etc/UTC", "Etc/GMT-14", "Etc/GMT+12", "Etc/GMT+5", "GMT"])
@pytest.mark.parametrize("window", [Window.DAY, Window.WEEK])
def test_fixed_offset_days_and_weeks_are_the_calendars(key, window):
    zone = zoneinfo.ZoneInfo(key)
    picks = random.Random(f"{key}-{window.value}")
    ranges = [(1559347200, 1561939200), (1559347201, 1561939199), (0, 86400 * 7), (MIN_EPOCH, MIN_EPOCH + 86400 * 30),
              (MAX_EPOCH - 86400 * 30, MAX_EPOCH)]
    for _ in range(300):
        start = picks.randint(MIN_EPOCH, MAX_EPOCH - 86400 * 800)
        ranges.append((start, start + picks.randint(1, 86400 * 800)))
    for start, end in ranges:
        edges = windows.window_edges(start=start, end=end, window=window, zone=zone)
        assert edges.tolist() == by_the_calendar(start, end, window, zone).tolist(), (start, end)


def test_a_zone_with_clock_changes_keeps_its_23_hour_day():
    # Local midnights of 31 March and 2 April 2024 in Amsterdam; clocks went forward on 31 March.
    edges = windows.window_edges(start=1711839600, end=1712008800, window=Window.DAY, zone=zoneinfo.ZoneInfo("Europe/Amsterdam"))
    assert np.diff(edges).tolist() == [82800, 86400]
