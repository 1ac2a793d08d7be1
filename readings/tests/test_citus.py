"""The relational store on a three-node Citus cluster (a coordinator and two workers started by the
tests): what migration 0016 distributes, one-meter reads routed to one shard, the write path through
the coordinator (imports by COPY, corrections, several meters at once) with change-log ids in the
coordinator's range and in commit order, and a worker added and the shards rebalanced onto it."""
import threading
from datetime import date

import numpy as np
import pytest
from django.apps import apps
from django.db import connection, models, transaction
from django.test.utils import CaptureQueriesContext

from readings.domain import WriteBy
from readings.models import Meter, Reading, ReadingChange
from readings.sources import readings_sources
from readings.sources.sql import upsert
from readings.sources.sql.citus import is_citus
from readings.writes.counts import WriteCounts
from testing.helpers import import_file, staged_rows, upsert_staged

DAY = 1_546_300_800  # 2019-01-01 00:00 UTC
BY = WriteBy("grpc", "key:abcd1234")
COORDINATOR_IDS = 2**48  # a worker's sequence range starts at its group id times this


@pytest.fixture(scope="module", autouse=True)
def database(citus_database):
    return citus_database


def shard_of(database, meter: Meter) -> int:
    return database.coordinator(f"SELECT get_shard_id_for_distribution_column('readings_reading', {meter.pk})")[0][0]


def test_the_database_is_seen_as_a_citus_coordinator():
    assert is_citus()


def test_readings_and_changes_are_distributed_by_meter_and_colocated_meters_and_accounts_are_reference_tables(database):
    kinds = dict(database.coordinator(
        "SELECT logicalrelid::text, CASE WHEN partmethod = 'h' THEN 'distributed by ' || "
        "column_to_column_name(logicalrelid, partkey) || ' group ' || colocationid "
        "WHEN repmodel = 't' THEN 'reference' ELSE 'citus local' END FROM pg_dist_partition"
    ))
    group = kinds["readings_reading"].rsplit(" ", 1)[1]
    for table in ("readings_reading", "readings_readingchange", "readings_rollup_hour", "readings_rollup_day"):
        assert kinds[table] == f"distributed by meter_id group {group}", table
    assert kinds["readings_meter"] == kinds["accounts_account"] == "reference"
    # What points at a meter stays on the coordinator, with its keys: citus local tables.
    assert kinds["readings_write"] == kinds["readings_importrun"] == kinds["auth_user"] == "citus local"
    assert "django_session" not in kinds and "readings_rejectedmessage" not in kinds  # plain tables
    assert database.coordinator(
        "SELECT count(*) FROM pg_dist_shard WHERE logicalrelid = 'readings_reading'::regclass"
    ) == [(32,)]
    nodes = database.coordinator(
        "SELECT count(DISTINCT nodename || nodeport) FROM pg_dist_shard_placement p JOIN pg_dist_shard s USING (shardid) "
        "WHERE logicalrelid = 'readings_reading'::regclass"
    )
    assert nodes == [(2,)]


def test_every_foreign_key_django_made_still_holds(database):
    declared = {
        (model._meta.db_table, field.column)
        for model in apps.get_models(include_auto_created=True)
        if model._meta.managed
        for field in model._meta.local_fields
        if isinstance(field, models.ForeignKey) and field.db_constraint
    }
    found = set(database.coordinator(
        "SELECT conrelid::regclass::text, a.attname FROM pg_constraint c "
        "JOIN pg_attribute a ON a.attrelid = c.conrelid AND a.attnum = c.conkey[1] WHERE c.contype = 'f'"
    ))
    assert declared - found == set()
    assert ("readings_reading", "meter_id") in found


def test_migrating_again_changes_nothing(database):
    from importlib import import_module

    from django.db import connection as django_connection

    migration = import_module("readings.migrations.0016_citus")
    before = database.coordinator("SELECT logicalrelid::text, colocationid FROM pg_dist_partition ORDER BY 1")
    with django_connection.schema_editor() as editor:
        migration.distribute(apps, editor)
    assert database.coordinator("SELECT logicalrelid::text, colocationid FROM pg_dist_partition ORDER BY 1") == before


def test_an_import_goes_through_the_coordinator_and_a_second_one_changes_nothing(reference_csv):
    first = import_file(reference_csv, meter="citus-reference")
    assert "2974 inserted, 0 updated, 0 unchanged, 1 skipped" in first
    again = import_file(reference_csv, meter="citus-reference")
    assert "0 inserted, 0 updated, 2974 unchanged, 1 skipped" in again
    meter = Meter.objects.get(name="citus-reference")
    assert meter.reading_count == Reading.objects.filter(meter=meter).count() == 2974


def test_a_one_meter_read_is_routed_to_one_shard(reference_csv, database):
    import_file(reference_csv, meter="citus-routed")
    meter = Meter.objects.get(name="citus-routed")
    source = readings_sources["default"]
    with CaptureQueriesContext(connection) as read:
        series = source.read(meter, start=DAY, end=DAY + 31 * 86400, after=None, limit=10_000)
    assert len(series.times) == 2974
    edges = np.arange(DAY, DAY + 32 * 86400, 86400, dtype=np.int64)
    with CaptureQueriesContext(connection) as aggregate:
        source.aggregate(meter, edges=edges)
    shard = shard_of(database, meter)
    for query in (read.captured_queries[-1]["sql"], aggregate.captured_queries[-1]["sql"]):
        with connection.cursor() as cursor:
            cursor.execute(f"EXPLAIN {query}")
            plan = "\n".join(row[0] for row in cursor.fetchall())
        assert "Task Count: 1" in plan, plan
        assert f"readings_reading_{shard}" in plan, plan


def test_long_aggregates_from_the_rollups_are_routed_to_one_shard_and_equal_the_raw_ones(tmp_path, database):
    from readings.generate import synthetic_readings, write_readings_csv
    from readings.sources.sql import rollups

    times, values = synthetic_readings(days=120, start=date(2019, 9, 1), seed=42, meter_index=0)
    write_readings_csv(tmp_path / "long.csv", times, values)
    import_file(tmp_path / "long.csv", meter="citus-long")
    meter = Meter.objects.get(name="citus-long")
    start = 1_567_296_000  # 2019-09-01 UTC
    edges = np.arange(start, start + 121 * 86400, 86400 * 7, dtype=np.int64)
    with CaptureQueriesContext(connection) as queries:
        rolled = rollups.aggregate(meter.pk, edges)
    assert rolled is not None
    raw = readings_sources["default"]._aggregate_postgresql(meter, edges)
    assert rolled.counts.tolist() == raw.counts.tolist()
    assert np.allclose(rolled.sums, raw.sums) and rolled.extremes == raw.extremes
    with connection.cursor() as cursor:
        read = next(query["sql"] for query in queries.captured_queries if query["sql"].startswith("SELECT bucket"))
        cursor.execute(f"EXPLAIN {read}")
        plan = "\n".join(row[0] for row in cursor.fetchall())
    assert "Task Count: 1" in plan, plan


def test_corrections_and_writes_of_several_meters_keep_the_change_log_in_commit_order(database):
    a, b, c = (Meter.objects.create(name=name) for name in ("citus-a", "citus-b", "citus-c"))
    assert len({shard_of(database, m) for m in (a, b, c)}) > 1
    assert upsert_staged(staged_rows(a, (1, 1.0), (2, 2.0)), meters=[a]) == WriteCounts(inserted=2)
    counts = upsert_staged(staged_rows(a, (1, 1.0), (2, 2.5), (0, 0.5)), staged_rows(b, (5, 5.0)), staged_rows(c, (5, 5.0)), meters=[a, b, c])
    assert counts == WriteCounts(inserted=3, updated=1, unchanged=1)
    assert sorted(Reading.objects.filter(meter=a).values_list("value", flat=True)) == [0.5, 1.0, 2.5]
    logged = list(ReadingChange.objects.filter(meter=a).order_by("id").values_list("value", "replaced"))
    assert logged[:2] == [(1.0, False), (2.0, False)] and sorted(logged[2:]) == [(0.5, False), (2.5, True)]
    assert ReadingChange.objects.filter(id__gte=COORDINATOR_IDS).count() == 0
    a.refresh_from_db()
    assert (a.reading_count, a.data_version) == (3, 2)


def test_large_writes_are_checked_for_readings_in_their_span_first(monkeypatch):
    monkeypatch.setattr(upsert, "COMPARE_AT_ONCE_ROWS", 0)
    a, b = Meter.objects.create(name="citus-span-a"), Meter.objects.create(name="citus-span-b")
    upsert_staged(staged_rows(a, (1, 1.0)), meters=[a])
    assert upsert_staged(staged_rows(a, (1, 1.5), (2, 2.0)), staged_rows(b, (1, 1.0)), meters=[a, b]) == WriteCounts(inserted=2, updated=1)


def test_concurrent_writes_into_one_meter_log_their_changes_in_commit_order():
    meter = Meter.objects.create(name="citus-concurrent")
    errors = []

    def writer(offset: int):
        try:
            for slot in range(offset, offset + 40, 2):
                upsert_staged(staged_rows(meter, (slot, float(slot))), meters=[meter])
        except Exception as exc:  # noqa: BLE001
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=writer, args=(offset,)) for offset in (0, 1)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    ids_by_commit = list(ReadingChange.objects.filter(meter=meter).order_by("committed_at", "id").values_list("id", flat=True))
    assert ids_by_commit == sorted(ids_by_commit) and len(ids_by_commit) == 40


def test_a_write_waits_for_another_into_the_same_meter_only(citus_database):
    from readings.sources.sql.upsert import lock_meters

    held, other = Meter.objects.create(name="citus-held"), Meter.objects.create(name="citus-free")
    locked, release, done = threading.Event(), threading.Event(), {}

    def holder():
        try:
            with transaction.atomic(), connection.cursor() as cursor:
                lock_meters(cursor, [held.pk])
                locked.set()
                release.wait(10)
        finally:
            connection.close()

    def writer(meter):
        try:
            upsert_staged(staged_rows(meter, (1, 1.0)), meters=[meter])
            done[meter.name] = True
        finally:
            connection.close()

    thread = threading.Thread(target=holder)
    thread.start()
    assert locked.wait(10)
    writers = [threading.Thread(target=writer, args=(meter,)) for meter in (other, held)]
    for each in writers:
        each.start()
    writers[0].join(10)
    assert done == {"citus-free": True}  # the other meter's write went through; this one waits
    release.set()
    writers[1].join(10)
    thread.join(10)
    assert done == {"citus-free": True, "citus-held": True}


def test_a_write_does_not_wait_for_an_uncommitted_write_into_another_meter(citus_database):
    # Each write ends by updating its meters' figures in the meters reference table, which Citus
    # would lock whole until commit: every write would then wait for any other to commit.
    first, second = Meter.objects.create(name="citus-first"), Meter.objects.create(name="citus-second")
    written, release, done, errors = threading.Event(), threading.Event(), threading.Event(), []

    def holder():
        try:
            with transaction.atomic():
                upsert_staged(staged_rows(first, (1, 1.0)), meters=[first])
                written.set()
                release.wait(60)
        except Exception as exc:  # noqa: BLE001
            errors.append(exc)
        finally:
            connection.close()

    def writer():
        try:
            upsert_staged(staged_rows(second, (1, 2.0)), meters=[second])
            done.set()
        except Exception as exc:  # noqa: BLE001
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=holder)]
    threads[0].start()
    try:
        assert written.wait(60)
        threads.append(threading.Thread(target=writer))
        threads[1].start()
        blocked = []
        # Until the second write commits, or is seen waiting for a lock the first holds to commit.
        while not done.wait(0.05) and not blocked and threads[1].is_alive():
            # Any node: Citus takes a reference table's lock on the first worker.
            blocked = citus_database.coordinator("SELECT waiting_gpid FROM citus_lock_waits")
        assert blocked == [] and done.is_set()
    finally:
        release.set()
        for thread in threads:
            thread.join(60)
    assert errors == []
    assert Meter.objects.get(pk=second.pk).reading_count == Meter.objects.get(pk=first.pk).reading_count == 1


def test_old_changes_are_pruned_and_a_watch_can_start_at_a_time():
    from datetime import timedelta

    from django.utils import timezone

    from readings.writes.changes import changes_after, prune_changes, watch_start

    meter = Meter.objects.create(name="citus-pruned")
    upsert_staged(staged_rows(meter, (1, 1.0), (2, 2.0)), meters=[meter])
    first = list(ReadingChange.objects.filter(meter=meter).order_by("id").values_list("id", flat=True))
    ReadingChange.objects.filter(id__in=first).update(committed_at=timezone.now() - timedelta(days=400))
    middle = timezone.now()
    upsert_staged(staged_rows(meter, (3, 3.0)), meters=[meter])

    start = watch_start([meter.name], start=middle)
    assert start.positions == {meter.pk: first[-1]}
    assert [c.value for c in changes_after(start.positions)] == [3.0]
    assert prune_changes(older_than=timedelta(days=365)) >= 2
    meter.refresh_from_db()
    assert meter.changes_pruned_through == first[-1]
    assert list(ReadingChange.objects.filter(meter=meter).values_list("value", flat=True)) == [3.0]
