"""Naive CSV times are read in the meter's zone and stored in UTC, DST days included."""
from datetime import UTC, datetime, timedelta

import pytest
from django.core.management import CommandError

from readings.models import ImportRun, Meter, Reading
from testing.helpers import HEADER, import_file

pytestmark = [pytest.mark.django_db, pytest.mark.store]


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


@pytest.mark.parametrize(("body", "expected"), [
    pytest.param(
        # The first 02:00 has no value; the second 02:00 is still the winter one (UTC 01:00).
        "2019-10-27 02:00:00,NaN\n2019-10-27 02:15:00,1\n2019-10-27 02:00:00,2\n2019-10-27 02:15:00,3\n",
        [((0, 15), 1.0), ((1, 0), 2.0), ((1, 15), 3.0)],
        id="missing-value-in-the-first-pass",
    ),
    pytest.param(
        "2019-10-27T02:15:00+02:00,1\n2019-10-27T02:15:00+01:00,2\n2019-10-27T01:30:00Z,3\n2019-10-27 03:00:00,4\n",
        [((0, 15), 1.0), ((1, 15), 2.0), ((1, 30), 3.0), ((2, 0), 4.0)],
        id="times-with-an-offset-are-instants",
    ),
])
def test_a_night_of_the_autumn_clock_change_in_amsterdam(write_csv, body, expected):
    import_file(write_csv(HEADER + body), time_zone="Europe/Amsterdam")

    assert list(Reading.objects.order_by("time").values_list("time", "value")) == [
        (datetime(2019, 10, 27, hour, minute, tzinfo=UTC), value) for (hour, minute), value in expected
    ]


@pytest.mark.parametrize("zone", ["Europe", "a" * 5000])
def test_a_folder_or_overlong_name_is_no_time_zone(write_csv, zone):
    with pytest.raises(CommandError, match="is not an IANA time zone"):
        import_file(write_csv(HEADER + "2019-01-01 00:15:00,1\n"), time_zone=zone)


def night_of_2019_10_27(*wall_times: str) -> str:
    return HEADER + "".join(f"2019-10-27 {t}:00,{i + 1}\n" for i, t in enumerate(wall_times))


def test_a_file_starting_in_the_first_pass_reads_the_step_back_as_the_second(write_csv):
    # 02:30 and 02:45 are summer time (UTC+2); the step back to 02:00 starts winter time (UTC+1).
    body = night_of_2019_10_27("02:30", "02:45", "02:00", "02:15", "02:30", "02:45", "03:00")

    import_file(write_csv(body), time_zone="Europe/Amsterdam", batch_size=2)

    stored = list(Reading.objects.order_by("time").values_list("time", "value"))
    assert [(t.strftime("%H:%M"), v) for t, v in stored] == [
        ("00:30", 1.0), ("00:45", 2.0), ("01:00", 3.0), ("01:15", 4.0), ("01:30", 5.0), ("01:45", 6.0), ("02:00", 7.0),
    ]


def test_a_repeated_hour_the_file_cannot_place_is_rejected_with_the_fix(write_csv):
    path = write_csv(night_of_2019_10_27("01:45", "02:00", "02:15", "02:30", "02:45"))

    with pytest.raises(CommandError) as raised:
        import_file(path, time_zone="Europe/Amsterdam")

    message = str(raised.value)
    assert "4 invalid rows, nothing imported: line 3: time '2019-10-27 02:00:00' falls in the hour that repeats" in message
    assert "give it with its UTC offset (2019-10-27T02:00:00+02:00 or +01:00), or import with --ambiguous" in message
    assert [row["line"] for row in ImportRun.objects.get().rejected_rows] == [3, 4, 5, 6]
    assert not Reading.objects.exists()


def test_two_files_of_one_repeated_hour_no_longer_overwrite_each_other(write_csv):
    first_pass = write_csv(night_of_2019_10_27("01:45", "02:00", "02:15", "02:30", "02:45"), "a.csv")
    second_pass = write_csv(night_of_2019_10_27("02:00", "02:15", "02:30", "02:45", "03:00"), "b.csv")

    import_file(first_pass, meter="m", time_zone="Europe/Amsterdam", ambiguous="earlier")
    output = import_file(second_pass, meter="m", ambiguous="later")

    assert "5 inserted, 0 updated, 0 unchanged" in output
    times = utc_times()
    assert len(times) == 10
    assert all(b - a == timedelta(minutes=15) for a, b in zip(times, times[1:]))
