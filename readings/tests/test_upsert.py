"""The one upsert of the relational store, as file imports and live writes both use it: counts,
the change log and each meter's summary from the same statements, for one meter or several, and
for large stagings (checked for readings in their span first) as for small ones."""
from datetime import UTC, datetime

import pytest
from django.db import transaction

from readings.domain import WriteBy
from readings.models import Meter, Reading, ReadingChange
from readings.sources.sql import upsert
from readings.sources.sql.upsert import upsert_readings
from readings.writes.counts import WriteCounts
from testing.helpers import staged_rows, upsert_staged

pytestmark = [pytest.mark.django_db, pytest.mark.store]

DAY = 1_546_300_800  # 2019-01-01 00:00 UTC
BY = WriteBy("grpc", "key:abcd1234")


def summary(meter: Meter) -> tuple:
    meter.refresh_from_db()
    return meter.reading_count, meter.first_reading_at, meter.last_reading_at, meter.data_version


def at(slot: int) -> datetime:
    return datetime.fromtimestamp(DAY + 900 * slot, UTC)


@pytest.fixture(params=[upsert.COMPARE_AT_ONCE_ROWS, 0], ids=["compared-at-once", "spans-checked-first"])
def staging_size(request, monkeypatch):
    monkeypatch.setattr(upsert, "COMPARE_AT_ONCE_ROWS", request.param)


def test_new_corrected_and_unchanged_readings_of_several_meters(staging_size):
    a, b = Meter.objects.create(name="a"), Meter.objects.create(name="b")
    assert upsert_staged(staged_rows(a, (1, 1.0), (2, 2.0)), meters=[a]) == WriteCounts(inserted=2)
    changes_before = ReadingChange.objects.count()

    counts = upsert_staged(staged_rows(a, (1, 1.0), (2, 2.5), (0, 0.5)), staged_rows(b, (5, 5.0)), meters=[a, b])

    assert counts == WriteCounts(inserted=2, updated=1, unchanged=1)
    assert summary(a) == (3, at(0), at(2), 2)
    assert summary(b) == (1, at(5), at(5), 1)
    logged = ReadingChange.objects.order_by("id").values_list("meter__name", "time", "value", "replaced")
    assert sorted(list(logged)[changes_before:]) == [
        ("a", at(0), 0.5, False), ("a", at(2), 2.5, True), ("b", at(5), 5.0, False),
    ]
    assert sorted(Reading.objects.filter(meter=a).values_list("time", "value")) == [(at(0), 0.5), (at(1), 1.0), (at(2), 2.5)]


def test_a_write_that_changes_nothing_leaves_the_meter_and_the_log_alone(staging_size):
    a = Meter.objects.create(name="a")
    upsert_staged(staged_rows(a, (1, 1.0)), meters=[a])
    before, changes = summary(a), ReadingChange.objects.count()

    assert upsert_staged(staged_rows(a, (1, 1.0)), meters=[a]) == WriteCounts(unchanged=1)
    assert summary(a) == before
    assert ReadingChange.objects.count() == changes


def test_two_writes_in_one_transaction_each_count_their_own_rows(staging_size):
    a = Meter.objects.create(name="a")
    with transaction.atomic():
        first = upsert_readings(meters=[a], batches=[staged_rows(a, (1, 1.0), (2, 2.0))], by=BY)
        second = upsert_readings(meters=[a], batches=[staged_rows(a, (3, 3.0))], by=BY)

    assert (first, second) == (WriteCounts(inserted=2), WriteCounts(inserted=1))
    assert summary(a) == (3, at(1), at(3), 2)
