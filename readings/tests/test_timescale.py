"""The relational store on TimescaleDB, on a server of the module's own: what migration 0015 makes,
late corrections into compressed chunks through the project's write path, and rollups from the
continuous aggregates that equal the raw rows' figures wherever they are not reported stale.

Without TimescaleDB installed these are skipped (failed in CI)."""
import contextlib
import io
import math
import zoneinfo
from datetime import UTC, datetime
from unittest import mock

import numpy as np
import pytest
from django.core.management import call_command
from django.db import connection
from hypothesis import HealthCheck, given, settings as hypothesis_settings, strategies as st

from readings.domain import Window
from readings.models import DailyRollup, HourlyRollup, Meter, ReadingChange
from readings.sources.sql import rollups, timescale
from readings.sources.sql.source import SqlSource
from readings.windows import window_edges
from readings.writes.live import RowsIn, readings_write
from testing.helpers import django_database

HOUR, DAY = timescale.HOUR, timescale.DAY
START = int(datetime(2019, 3, 1, tzinfo=UTC).timestamp())
DAYS = 40
END = START + DAYS * DAY
# Slots left without a reading, so that a late write can insert one into a compressed chunk.
GAPS = {START + 11 * DAY + 10 * HOUR + 1800, START + 20 * DAY + 5 * HOUR}


def iso(epoch: int) -> str:
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def sql(statement: str, params=None) -> list[tuple]:
    with connection.cursor() as cursor:
        cursor.execute(statement, params)
        return cursor.fetchall() if cursor.description else []


@pytest.fixture(scope="module")
def timescale_store(timescaledb_server, django_db_blocker):
    """A TimescaleDB server, migrated, holding 40 days of two meters' readings with the aggregates
    refreshed and every chunk of readings compressed."""
    with django_db_blocker.unblock(), django_database(timescaledb_server.create_database("ts_test")):
        call_command("migrate", verbosity=0)
        slots = np.arange(START, END, 900)
        for number, name in enumerate(("ts-a", "ts-b")):
            Meter.objects.create(name=name)
            kept = np.array([s not in GAPS for s in slots.tolist()])
            values = np.round(50 + 20 * np.sin(slots[kept] / 13751.0 + number) + (slots[kept] % 7) * 0.37, 2)
            readings_write([RowsIn(name, [iso(s) for s in slots[kept].tolist()], values.tolist())])
        for view in timescale.AGGREGATES.values():
            sql(f"CALL refresh_continuous_aggregate('{view}', NULL, NULL)")
        sql("SELECT compress_chunk(c) FROM show_chunks('readings_reading') AS c")
        yield timescaledb_server


def meter(name: str) -> Meter:
    return Meter.objects.get(name=name)


def raw_buckets(meter_id: int, width: int, start: int, end: int) -> dict[int, tuple[int, float, float, float]]:
    """Each bucket's count, sum, min and max straight from the readings (the computation the
    aggregates must equal)."""
    rows = sql(
        "SELECT floor(EXTRACT(EPOCH FROM time) / %s)::bigint * %s, count(*), sum(value), min(value), max(value) "
        "FROM readings_reading WHERE meter_id = %s AND time >= to_timestamp(%s) AND time < to_timestamp(%s) GROUP BY 1",
        [width, width, meter_id, start, end],
    )
    return {int(b): (int(c), float(t), float(lo), float(hi)) for b, c, t, lo, hi in rows}


def answered(meter_id: int, width: int, start: int, end: int) -> dict[int, tuple[int, float, float, float]]:
    """The buckets as a reader of rollups would answer: from the aggregate, but from the raw
    rows within the stale spans."""
    found = timescale.rollups(meter_id=meter_id, width=width, start=start, end=end)
    stale = found.stale
    assert all(a < b for a, b in stale) and all(stale[i][1] < stale[i + 1][0] for i in range(len(stale) - 1))
    assert all(start <= a and b <= end and a % width == 0 and b % width == 0 for a, b in stale)

    def is_stale(bucket: int) -> bool:
        return any(a <= bucket < b for a, b in stale)

    buckets = {
        int(s): (int(c), float(t), float(lo), float(hi))
        for s, c, t, lo, hi in zip(found.starts, found.counts, found.totals, found.lows, found.highs)
        if not is_stale(int(s))
    }
    for a, b in stale:
        buckets.update(raw_buckets(meter_id, width, a, b))
    return buckets


def assert_same(got: dict, expected: dict) -> None:
    assert sorted(got) == sorted(expected)
    for bucket, (count, total, low, high) in expected.items():
        g = got[bucket]
        # Counts and extremes exactly; sums of floats up to the order they were added in.
        assert (g[0], g[2], g[3]) == (count, low, high), iso(bucket)
        assert math.isclose(g[1], total, rel_tol=1e-12), iso(bucket)


def test_migration_makes_a_compressed_hypertable_and_real_time_aggregates(timescale_store):
    assert sql(
        "SELECT column_name, time_interval FROM timescaledb_information.dimensions WHERE hypertable_name = 'readings_reading'"
    ) == [("time", sql("SELECT INTERVAL '7 days'")[0][0])]
    assert sql(
        "SELECT attname, segmentby_column_index, orderby_column_index FROM timescaledb_information.compression_settings "
        "WHERE hypertable_name = 'readings_reading' ORDER BY attname"
    ) == [("meter_id", 1, None), ("time", None, 1)]
    assert sql(
        "SELECT view_name, materialized_only, compression_enabled FROM timescaledb_information.continuous_aggregates "
        "ORDER BY view_name"
    ) == [("readings_reading_day", False, False), ("readings_reading_hour", False, False)]
    jobs = sql(
        "SELECT hypertable_name, proc_name, config->>'compress_after', config->>'end_offset' "
        "FROM timescaledb_information.jobs WHERE hypertable_name IS NOT NULL ORDER BY proc_name, hypertable_name"
    )
    policies = {(ht, proc): (after, offset) for ht, proc, after, offset in jobs}
    assert policies[("readings_reading", "policy_compression")] == ("30 days", None)
    assert ("readings_reading_hour", "policy_refresh_continuous_aggregate") in policies
    assert ("readings_reading_day", "policy_refresh_continuous_aggregate") in policies
    # Every chunk of readings in the fixture is compressed; the change log is no hypertable.
    assert sql("SELECT bool_and(is_compressed) FROM timescaledb_information.chunks WHERE hypertable_name = 'readings_reading'") == [(True,)]
    assert sql("SELECT count(*) FROM timescaledb_information.hypertables WHERE hypertable_name = 'readings_readingchange'") == [(0,)]
    assert timescale.catalog() is not None


def test_the_aggregates_are_read_within_bounds_on_their_partitioning_column(timescale_store):
    # Bounds on `bucket` let TimescaleDB plan only the chunks holding the pieces, and its own
    # (meter_id, bucket) index serves them; migration 0017 dropped the (meter_id, start) ones.
    assert sql("SELECT count(*) FROM pg_indexes WHERE indexname LIKE 'readings_reading_%%_meter_start'") == [(0,)]
    days = np.arange(START, END + 1, DAY)  # dense day pieces: one range scan
    ragged = np.array([START + 1800, START + 20 * DAY + 1800, END - 1800])  # scattered hours: probes
    for edges in (days, ragged):
        pieces = rollups.plan(edges)
        for kind in (rollups.DAILY, rollups.HOURLY):
            mine = pieces.only(pieces.kinds == kind)
            if not len(mine.los):
                continue
            rows, params = rollups._rows_sql("bucket", meter("ts-a").pk, mine)
            plan = [line for (line,) in sql(f"EXPLAIN SELECT * FROM ({rows}) AS r", params)]
            conditions = [line for line in plan if "Index Cond" in line]
            assert conditions and all("bucket >=" in line for line in conditions), "\n".join(plan)


def test_the_migration_moves_existing_readings_into_chunks(timescale_store, django_db_blocker):
    with django_db_blocker.unblock(), django_database(timescale_store.create_database("ts_existing")):
        call_command("migrate", "readings", "0014", verbosity=0)
        assert timescale.catalog() is None
        Meter.objects.create(name="before")
        slots = list(range(START, START + 20 * DAY, 900))
        readings_write([RowsIn("before", [iso(t) for t in slots], [float(i % 50) for i in range(len(slots))])])
        call_command("migrate", verbosity=0)
        timescale.forget_catalog()
        assert timescale.catalog() is not None
        week = 7 * DAY  # chunks start at multiples of a week since the epoch
        assert sql("SELECT count(*) FROM show_chunks('readings_reading')") == [(len(range(START - START % week, START + 20 * DAY, week)),)]
        assert sql("SELECT count(*) FROM ONLY readings_reading") == [(0,)]
        assert sql("SELECT count(*), sum(value) FROM readings_reading") == [(len(slots), float(sum(i % 50 for i in range(len(slots)))))]
        # Nothing materialized yet: every bucket is answered from the raw rows, all of them fresh.
        m = meter("before")
        assert_same(answered(m.pk, DAY, START, START + 20 * DAY), raw_buckets(m.pk, DAY, START, START + 20 * DAY))
        assert timescale.stale_spans(start=START, end=START + 20 * DAY) == [(START, START + 20 * DAY)]


def test_aggregates_equal_the_raw_rows_and_the_store_answers_alike(timescale_store):
    a = meter("ts-a")
    for width in (HOUR, DAY):
        found = timescale.rollups(meter_id=a.pk, width=width, start=START, end=END)
        assert found.stale == []
        assert_same(answered(a.pk, width, START, END), raw_buckets(a.pk, width, START, END))
    # The same days as the store's raw aggregate (what AggregateReadings serves today).
    edges = np.arange(START, START + 8 * DAY, DAY)
    stats = SqlSource(alias="default").aggregate(a, edges=edges)
    days = timescale.rollups(meter_id=a.pk, width=DAY, start=START, end=START + 7 * DAY)
    assert days.counts.tolist() == stats.counts.tolist()
    assert days.lows.tolist() == stats.mins.tolist() and days.highs.tolist() == stats.maxs.tolist()
    assert np.allclose(days.totals, stats.sums, rtol=1e-12, atol=0)


def test_a_late_write_is_stale_until_refreshed(timescale_store):
    """Through the write path into compressed chunks: an UPDATE of a stored reading and an INSERT
    of a missing one, with the refresh after commit held back; then refreshed."""
    b = meter("ts-b")
    corrected, gap = START + 10 * DAY + 10 * HOUR + 900, START + 20 * DAY + 5 * HOUR
    with mock.patch.object(timescale, "refresh"):
        counts = readings_write([RowsIn("ts-b", [iso(corrected), iso(gap)], [999.5, 123.25])])
    assert (counts.inserted, counts.updated) == (1, 1)
    # Only chunks within the span written hold rows taken out of compressed batches (the write's
    # statements are bounded by its meters and the span of its times; unbounded, every batch of
    # the table was decompressed).
    partial = sql(
        "SELECT EXTRACT(EPOCH FROM s.range_start)::bigint FROM _timescaledb_catalog.chunk AS c "
        "JOIN timescaledb_information.chunks AS s ON s.chunk_schema = c.schema_name AND s.chunk_name = c.table_name "
        "WHERE s.hypertable_name = 'readings_reading' AND c.status & 8 = 8 ORDER BY 1"
    )
    week = 7 * DAY
    assert [row[0] for row in partial] == list(range(corrected - corrected % week, gap, week))
    assert sql("SELECT value FROM readings_reading WHERE meter_id = %s AND time = to_timestamp(%s)", [b.pk, corrected]) == [(999.5,)]
    assert list(ReadingChange.objects.filter(meter=b).order_by("id").values_list("value", "replaced"))[-2:] == [
        (999.5, True), (123.25, False),
    ]
    for width in (HOUR, DAY):
        found = timescale.rollups(meter_id=b.pk, width=width, start=START, end=END)
        # The written buckets, and (as TimescaleDB logs a span of times per statement) no more
        # than the span between them.
        written = [corrected - corrected % width, gap - gap % width]
        assert all(any(a <= bucket < b for a, b in found.stale) for bucket in written)
        assert written[0] <= found.stale[0][0] and found.stale[-1][1] <= written[1] + width
        stale_row = found.totals[found.starts.tolist().index(corrected - corrected % width)]
        assert stale_row != raw_buckets(b.pk, width, corrected - corrected % width, corrected + 1)[corrected - corrected % width][1]
        assert_same(answered(b.pk, width, START, END), raw_buckets(b.pk, width, START, END))
    timescale.refresh(first=corrected, last=gap)
    for width in (HOUR, DAY):
        found = timescale.rollups(meter_id=b.pk, width=width, start=START, end=END)
        assert found.stale == []
        assert_same(answered(b.pk, width, START, END), raw_buckets(b.pk, width, START, END))
    # The other meter's figures never changed.
    a = meter("ts-a")
    assert_same(answered(a.pk, DAY, START, END), raw_buckets(a.pk, DAY, START, END))


def test_a_late_write_is_refreshed_once_committed(timescale_store):
    a = meter("ts-a")
    gap = START + 11 * DAY + 10 * HOUR + 1800
    readings_write([RowsIn("ts-a", [iso(gap)], [77.0])])
    for width in (HOUR, DAY):
        found = timescale.rollups(meter_id=a.pk, width=width, start=START, end=END)
        assert found.stale == []
        bucket = gap - gap % width
        got = dict(zip(found.starts.tolist(), found.counts.tolist()))
        assert got[bucket] == raw_buckets(a.pk, width, bucket, bucket + width)[bucket][0]
    assert (HOUR // 900) == sql(
        "SELECT count FROM readings_reading_hour WHERE meter_id = %s AND start = %s", [a.pk, gap - gap % HOUR]
    )[0][0]


def test_buckets_above_the_watermark_come_from_the_raw_rows(timescale_store):
    """Readings newer than anything materialized are counted by the real-time part at once."""
    a = meter("ts-a")
    later = END + 3 * DAY
    readings_write([RowsIn("ts-a", [iso(later), iso(later + 900)], [1.0, 2.0])])
    found = timescale.rollups(meter_id=a.pk, width=DAY, start=END, end=END + 5 * DAY)
    assert (found.starts.tolist(), found.counts.tolist(), found.totals.tolist(), found.stale) == ([later], [2], [3.0], [])


@hypothesis_settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    data=st.data(),
    width=st.sampled_from([HOUR, DAY]),
    refreshed=st.booleans(),
)
def test_rollups_with_stale_spans_read_raw_equal_the_raw_rows(timescale_store, data, width, refreshed):
    """Random late writes (refreshed after commit or not), then random ranges: the aggregates'
    rows outside the stale spans and the raw rows inside them are the raw rows' figures."""
    name = data.draw(st.sampled_from(["ts-a", "ts-b"]))
    m = meter(name)
    slots = data.draw(st.lists(st.integers(0, DAYS * 96 - 1), min_size=1, max_size=3))
    values = data.draw(st.lists(st.floats(-1e3, 1e3, allow_nan=False).map(lambda v: round(v, 2)), min_size=len(slots), max_size=len(slots)))
    rows = dict(zip((iso(START + s * 900) for s in slots), values))
    patch = mock.patch.object(timescale, "refresh") if not refreshed else contextlib.nullcontext()
    with patch:
        readings_write([RowsIn(name, list(rows), list(rows.values()))])
    first = data.draw(st.integers(0, DAYS * DAY // width - 1))
    last = data.draw(st.integers(first + 1, DAYS * DAY // width + 2))
    start, end = START + first * width, START + last * width
    assert_same(answered(m.pk, width, start, end), raw_buckets(m.pk, width, start, end))


ZONES = ["UTC", "Europe/Berlin", "Asia/Kathmandu", "America/St_Johns"]


def store_aggregate(m: Meter, edges: np.ndarray, *, rolled: bool):
    """AggregateReadings' figures from the store: from the rollups wherever a window holds a
    whole hour, or from the raw readings only."""
    if rolled:
        patches = [mock.patch.object(rollups, "ROLLUP_FROM_SECONDS", 0), mock.patch.object(rollups, "ROLLUP_PIECE_SECONDS", 0)]
    else:
        patches = [mock.patch.object(rollups, "aggregate", lambda *args: None)]
    with contextlib.ExitStack() as stack:
        for patch in patches:
            stack.enter_context(patch)
        return SqlSource(alias="default").aggregate(m, edges=edges)


def test_the_store_reads_the_aggregates_and_leaves_the_rollup_tables_empty(timescale_store):
    assert rollups.rollup_relations() == (
        timescale.catalog().materialized[HOUR], timescale.catalog().materialized[DAY],
    )
    assert rollups.rollup_relations()[1].startswith("_timescaledb_internal._materialized_hypertable_")
    assert HourlyRollup.objects.count() == DailyRollup.objects.count() == 0


@hypothesis_settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    data=st.data(),
    window=st.sampled_from([Window.HOUR, Window.DAY, Window.WEEK, Window.MONTH]),
    zone=st.sampled_from(ZONES),
    refreshed=st.booleans(),
)
def test_aggregate_readings_from_the_aggregates_equal_the_raw_computation(timescale_store, data, window, zone, refreshed):
    """After a random late write (refreshed after commit or not), random windows in zones with
    DST days and a +05:45 offset: the store's answer through the aggregates is the raw one."""
    name = data.draw(st.sampled_from(["ts-a", "ts-b"]))
    m = meter(name)
    slots = data.draw(st.lists(st.integers(-96, (DAYS + 1) * 96), min_size=1, max_size=3))
    values = data.draw(st.lists(st.floats(-1e3, 1e3, allow_nan=False).map(lambda v: round(v, 1)), min_size=len(slots), max_size=len(slots)))
    rows = dict(zip((iso(START + s * 900) for s in slots), values))
    with mock.patch.object(timescale, "refresh") if not refreshed else contextlib.nullcontext():
        readings_write([RowsIn(name, list(rows), list(rows.values()))])
    start = data.draw(st.integers(START - 2 * DAY, END))
    length = data.draw(st.integers(1, (3 if window is Window.HOUR else DAYS + 4) * DAY))
    edges = window_edges(start=start, end=start + length, window=window, zone=zoneinfo.ZoneInfo(zone))
    rolled, raw = store_aggregate(m, edges, rolled=True), store_aggregate(m, edges, rolled=False)
    assert rolled.counts.tolist() == raw.counts.tolist()
    np.testing.assert_allclose(rolled.sums, raw.sums, rtol=1e-12, atol=1e-9)
    np.testing.assert_array_equal(rolled.mins, raw.mins)
    np.testing.assert_array_equal(rolled.maxs, raw.maxs)
    assert rolled.extremes == raw.extremes


def test_rebuild_rollups_refreshes_the_aggregates(timescale_store):
    a = meter("ts-a")
    with mock.patch.object(timescale, "refresh"):
        readings_write([RowsIn("ts-a", [iso(START + 5 * DAY)], [4321.0])])
    assert timescale.stale_spans(start=START, end=END) != []
    call_command("rebuild_rollups", stdout=io.StringIO())
    # The daily aggregate is fresh again. (After some runs of the random writes above, an hourly
    # entry of the written hour stays in the hourly aggregate's log after a refresh over all
    # time, not reproduced alone: the hour is then read raw, which costs time, not exactness.)
    assert timescale.rollups(meter_id=a.pk, width=DAY, start=START, end=END).stale == []
    for width in (HOUR, DAY):
        assert_same(answered(a.pk, width, START, END), raw_buckets(a.pk, width, START, END))
