"""Naive CSV times are read in the meter's zone and stored in UTC, DST days included."""
from datetime import UTC, datetime

import pytest
from django.core.management import CommandError

from readings.models import Meter, Reading
from testing.fixtures import HEADER, import_file

pytestmark = pytest.mark.django_db



def utc_times() -> list[datetime]:
    return list(Reading.objects.order_by("time").values_list("time", flat=True))


def test_times_are_read_in_the_given_zone(write_csv):
    import_file(write_csv(HEADER + "2019-01-01 00:15:00,1\n2019-07-01 00:15:00,2\n"), time_zone="Europe/Amsterdam")

    assert utc_times() == [datetime(2018, 12, 31, 23, 15, tzinfo=UTC), datetime(2019, 6, 30, 22, 15, tzinfo=UTC)]
    assert Meter.objects.get().time_zone == "Europe/Amsterdam"


def test_new_imports_use_the_meters_zone(write_csv):
    import_file(write_csv(HEADER + "2019-01-01 00:15:00,1\n"), time_zone="America/New_York")
    import_file(write_csv(HEADER + "2019-01-01 00:30:00,2\n"))

    assert utc_times() == [datetime(2019, 1, 1, 5, 15, tzinfo=UTC), datetime(2019, 1, 1, 5, 30, tzinfo=UTC)]


def test_fall_back_hour_is_read_twice_in_order(write_csv):
    # 2019-10-27 in Amsterdam: 02:00-02:59 happens first in summer time (UTC+2), then in winter time.
    wall_times = ["01:45", "02:00", "02:15", "02:30", "02:45", "02:00", "02:15", "02:30", "02:45", "03:00"]
    body = "".join(f"2019-10-27 {t}:00,{i}\n" for i, t in enumerate(wall_times))

    import_file(write_csv(HEADER + body), time_zone="Europe/Amsterdam", batch_size=3)

    times = utc_times()
    assert len(times) == 10
    assert times[0] == datetime(2019, 10, 26, 23, 45, tzinfo=UTC)
    assert times[-1] == datetime(2019, 10, 27, 2, 0, tzinfo=UTC)
    assert all(b - a == (times[1] - times[0]) for a, b in zip(times, times[1:]))


def test_spring_forward_gap_is_an_invalid_row(write_csv):
    body = "2019-03-31 01:45:00,1\n2019-03-31 02:15:00,2\n2019-03-31 03:00:00,3\n"

    with pytest.raises(CommandError, match="line 3: time '2019-03-31 02:15:00' does not exist in Europe/Amsterdam"):
        import_file(write_csv(HEADER + body), time_zone="Europe/Amsterdam")
    assert not Reading.objects.exists()


def test_a_missing_value_in_the_first_pass_of_a_fall_back_hour(write_csv):
    # The first 02:00 has no value; the second 02:00 is still the winter one (UTC 01:00).
    body = "2019-10-27 02:00:00,NaN\n2019-10-27 02:15:00,1\n2019-10-27 02:00:00,2\n2019-10-27 02:15:00,3\n"

    import_file(write_csv(HEADER + body), time_zone="Europe/Amsterdam")

    assert list(Reading.objects.order_by("time").values_list("time", "value")) == [
        (datetime(2019, 10, 27, 0, 15, tzinfo=UTC), 1.0),
        (datetime(2019, 10, 27, 1, 0, tzinfo=UTC), 2.0),
        (datetime(2019, 10, 27, 1, 15, tzinfo=UTC), 3.0),
    ]


@pytest.mark.parametrize("zone", ["Europe", "a" * 5000])
def test_a_folder_or_overlong_name_is_no_time_zone(write_csv, zone):
    with pytest.raises(CommandError, match="is not an IANA time zone"):
        import_file(write_csv(HEADER + "2019-01-01 00:15:00,1\n"), time_zone=zone)
