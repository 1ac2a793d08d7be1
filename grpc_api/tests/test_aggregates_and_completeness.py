"""AggregateReadings (local windows, DST days, empty windows) and GetCompleteness."""
import math

import pytest

from grpc_api.gen.meterusage.v1 import meter_usage_pb2 as pb
from testing.helpers import JANUARY, ts

pytestmark = [pytest.mark.django_db, pytest.mark.store]


def aggregate(stub, **request) -> pb.AggregateReadingsResponse:
    return stub.AggregateReadings(pb.AggregateReadingsRequest(**request))


@pytest.mark.parametrize("meter", ["meterusage", "meterusage-csv"])
def test_daily_sum_of_january_17th(stub, reference, meter):
    day = reference.values("2019-01-17")

    response = aggregate(
        stub, meter=meter, window=pb.WINDOW_DAY,
        start_time=ts("2019-01-17T00:00:00Z"), end_time=ts("2019-01-18T00:00:00Z"),
    )

    (bucket,) = response.buckets
    assert (bucket.count, bucket.expected_count) == (95, 96)
    assert bucket.sum == pytest.approx(math.fsum(day), abs=1e-9)
    assert (bucket.min, bucket.max) == (min(day), max(day))
    assert bucket.mean == pytest.approx(math.fsum(day) / 95)
    assert bucket.coverage == pytest.approx(95 / 96)


def test_daily_buckets_of_january_add_up_to_the_file(stub, reference):
    values = reference.values()

    response = aggregate(stub, meter="meterusage", window=pb.WINDOW_DAY, time_zone="UTC", **JANUARY)

    assert len(response.buckets) == 31
    assert [b.start_time.ToJsonString()[:10] for b in response.buckets][:2] == ["2019-01-01", "2019-01-02"]
    assert sum(b.count for b in response.buckets) == 2974
    assert math.fsum(b.sum for b in response.buckets) == pytest.approx(math.fsum(values), abs=1e-6)
    assert response.total.count == 2974 and response.total.expected_count == 2976
    assert (response.total.min, response.total.max) == (min(values), max(values))
    assert response.time_zone == "UTC"


def test_extremes_carry_their_times(stub, reference):
    rows = reference.readings
    lowest = min(rows, key=lambda r: (r[1], r[0]))
    highest = max(rows, key=lambda r: (r[1], [-ord(c) for c in r[0]]))

    response = aggregate(stub, meter="meterusage", window=pb.WINDOW_MONTH, **JANUARY)

    assert response.min_time.ToJsonString() == lowest[0]
    assert response.max_time.ToJsonString() == highest[0]


def test_amsterdam_days_follow_the_clock_change(stub):
    response = aggregate(
        stub, meter="gen-a", window=pb.WINDOW_DAY, time_zone="Europe/Amsterdam",
        start_time=ts("2019-10-25T22:00:00Z"), end_time=ts("2019-10-28T23:00:00Z"),
    )

    hours = [(b.end_time.seconds - b.start_time.seconds) / 3600 for b in response.buckets]
    assert hours == [24, 25, 24]
    assert [b.expected_count for b in response.buckets] == [96, 100, 96]
    assert response.buckets[1].start_time.ToJsonString() == "2019-10-26T22:00:00Z"


def test_weeks_start_on_monday_and_months_on_the_first(stub):
    weeks = aggregate(
        stub, meter="gen-a", window=pb.WINDOW_WEEK, time_zone="Europe/Amsterdam",
        start_time=ts("2019-09-30T22:00:00Z"), end_time=ts("2019-10-28T23:00:00Z"),
    )
    months = aggregate(
        stub, meter="gen-a", window=pb.WINDOW_MONTH, time_zone="Europe/Amsterdam",
        start_time=ts("2019-09-30T22:00:00Z"), end_time=ts("2019-12-31T23:00:00Z"),
    )

    # The range starts on Tuesday 1 October (local): the first week is clipped to it.
    assert [b.start_time.ToJsonString() for b in weeks.buckets] == [
        "2019-09-30T22:00:00Z", "2019-10-06T22:00:00Z", "2019-10-13T22:00:00Z",
        "2019-10-20T22:00:00Z", "2019-10-27T23:00:00Z",
    ]
    assert [b.expected_count for b in weeks.buckets] == [6 * 96, 7 * 96, 7 * 96, 7 * 96 + 4, 96]
    assert [b.start_time.ToJsonString() for b in months.buckets] == [
        "2019-09-30T22:00:00Z", "2019-10-31T23:00:00Z", "2019-11-30T23:00:00Z",
    ]
    assert sum(b.count for b in months.buckets) == months.total.count


def test_hours_and_quarters_and_empty_windows(stub):
    hours = aggregate(
        stub, meter="meterusage", window=pb.WINDOW_HOUR,
        start_time=ts("2018-12-31T22:00:00Z"), end_time=ts("2019-01-01T02:00:00Z"),
    )
    quarters = aggregate(
        stub, meter="meterusage", window=pb.WINDOW_15_MINUTES,
        start_time=ts("2019-01-01T01:00:00Z"), end_time=ts("2019-01-01T02:00:00Z"),
    )

    assert [b.count for b in hours.buckets] == [0, 0, 3, 4]
    empty = hours.buckets[0]
    assert (empty.sum, empty.coverage) == (0.0, 0.0)
    assert not empty.HasField("mean") and not empty.HasField("min") and not empty.HasField("max")
    assert [b.sum for b in quarters.buckets] == [56.03, 55.77, 55.45, 55.74]


def test_half_hour_zone_has_half_past_hours(stub):
    response = aggregate(
        stub, meter="meterusage", window=pb.WINDOW_HOUR, time_zone="Asia/Kolkata",
        start_time=ts("2019-01-01T00:30:00Z"), end_time=ts("2019-01-01T02:30:00Z"),
    )

    assert [b.start_time.ToJsonString() for b in response.buckets] == ["2019-01-01T00:30:00Z", "2019-01-01T01:30:00Z"]
    assert [b.count for b in response.buckets] == [4, 4]


@pytest.mark.parametrize("meter", ["meterusage", "meterusage-csv"])
def test_completeness_of_january(stub, meter):
    response = stub.GetCompleteness(pb.GetCompletenessRequest(meter=meter, **JANUARY))

    assert (response.expected_count, response.present_count, response.missing_count) == (2976, 2974, 2)
    assert response.interval.seconds == 900
    assert response.coverage == pytest.approx(2974 / 2976)
    assert [(g.start_time.ToJsonString(), g.end_time.ToJsonString(), g.missing_count) for g in response.gaps] == [
        ("2019-01-01T00:00:00Z", "2019-01-01T00:15:00Z", 1),
        ("2019-01-17T02:45:00Z", "2019-01-17T03:00:00Z", 1),
    ]
    assert response.gap_count == 2


def test_completeness_of_a_range_without_readings(stub):
    response = stub.GetCompleteness(pb.GetCompletenessRequest(
        meter="meterusage", start_time=ts("2019-03-01T00:00:00Z"), end_time=ts("2019-03-01T01:00:00Z")
    ))

    assert (response.expected_count, response.present_count, response.missing_count) == (4, 0, 4)
    assert [(g.start_time.ToJsonString(), g.missing_count) for g in response.gaps] == [("2019-03-01T00:00:00Z", 4)]


def test_completeness_gaps_of_generated_data(stub, served_data):
    """The generator drops a few runs of slots; completeness finds exactly those."""
    import numpy as np

    from readings.generate import synthetic_readings
    from testing.data import GENERATED_DAYS, GENERATED_START
    times, _ = synthetic_readings(days=GENERATED_DAYS, start=GENERATED_START, seed=42, meter_index=0)
    slots = np.arange(times[0], times[-1] + np.timedelta64(15, "m"), np.timedelta64(15, "m"))
    missing = np.setdiff1d(slots, times)

    response = stub.GetCompleteness(pb.GetCompletenessRequest(
        meter="gen-a-csv", start_time=ts("2019-08-31T22:00:00Z"), end_time=ts("2019-12-29T23:00:00Z")
    ))

    # Wall-clock data has one 02:00-02:45 on 27 October, when Amsterdam lives that hour twice:
    # the second pass is four more missing slots.
    assert response.missing_count == len(missing) + 4
    assert sum(g.missing_count for g in response.gaps) == len(missing) + 4
    assert ("2019-10-27T01:00:00Z", "2019-10-27T02:00:00Z", 4) in [
        (g.start_time.ToJsonString(), g.end_time.ToJsonString(), g.missing_count) for g in response.gaps
    ]


@pytest.mark.parametrize("window", [pb.WINDOW_DAY, pb.WINDOW_WEEK, pb.WINDOW_MONTH])
@pytest.mark.parametrize(("start", "end"), [
    ("0001-01-02T00:00:00Z", "0001-03-01T00:00:00Z"),
    ("9999-11-01T00:00:00Z", "9999-12-30T00:00:00Z"),
])
# Before 1901 zoneinfo keeps local mean time: Kiritimati was west of UTC then, Tokyo east, so the
# week and month of 0001-01-02 begin on a local midnight that is before year 1 in UTC.
@pytest.mark.parametrize("zone", ["Pacific/Kiritimati", "Asia/Tokyo", "Pacific/Auckland"])
def test_windows_at_the_ends_of_time(stub, window, start, end, zone):
    response = aggregate(stub, meter="meterusage", window=window, time_zone=zone,
                         start_time=ts(start), end_time=ts(end))

    assert response.total.count == 0
    assert response.buckets[0].start_time.ToJsonString() == start
    assert response.buckets[-1].end_time.ToJsonString() == end
