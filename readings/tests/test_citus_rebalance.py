"""A worker added to a running Citus store and the shards rebalanced onto it, as docs/stores.md says
to do it: the readings, a one-meter read (still one shard) and a write all hold, and the shards
lie on three nodes."""
import numpy as np
from django.db import connection, transaction
from django.test.utils import CaptureQueriesContext

from readings.domain import WriteBy
from readings.models import Meter, Reading, ReadingChange
from readings.sources import readings_sources
from readings.sources.sql.upsert import StagedRows, upsert_readings
from readings.writes.counts import WriteCounts
from testing.helpers import import_file

DAY = 1_546_300_800  # 2019-01-01 00:00 UTC


def rows(meter: Meter, *slots: int, value: float = 1.0) -> StagedRows:
    epochs = np.array([DAY + 900 * slot for slot in slots], dtype=np.int64)
    return StagedRows(meter.pk, np.arange(len(slots), dtype=np.int64), epochs, np.full(len(slots), value))


def placements(database) -> dict[int, int]:
    """Shards of the readings per worker port."""
    return dict(database.coordinator(
        "SELECT nodeport, count(*) FROM citus_shards WHERE table_name = 'readings_reading'::regclass GROUP BY nodeport"
    ))


def test_a_worker_is_added_and_the_shards_rebalanced_onto_it(citus_database, citus_cluster, reference_csv):
    database = citus_database
    import_file(reference_csv, meter="rebalanced")
    meters = [Meter.objects.create(name=f"spread-{i}") for i in range(24)]
    for meter in meters:
        with transaction.atomic():
            upsert_readings(meters=[meter], batches=[rows(meter, *range(10))], by=WriteBy("grpc", "service"))
    total = Reading.objects.count()
    assert len(placements(database)) == 2

    worker = citus_cluster.add_worker()
    worker.execute("postgres", f"CREATE DATABASE {database.name}")
    worker.execute(database.name, "CREATE EXTENSION citus")
    database.coordinator(f"SELECT citus_add_node('127.0.0.1', {worker.port})")
    # block_writes copies each shard while writes to it wait; the default (logical replication,
    # writes go on) needs wal_level = logical on every node.
    database.coordinator(
        "SELECT citus_rebalance_start(shard_transfer_mode => 'block_writes')", "SELECT citus_rebalance_wait()"
    )

    spread = placements(database)
    assert len(spread) == 3 and worker.port in spread and sum(spread.values()) == 32, spread
    assert max(spread.values()) - min(spread.values()) <= 1
    assert Reading.objects.count() == total
    meter = Meter.objects.get(name="rebalanced")
    with CaptureQueriesContext(connection) as read:
        series = readings_sources["default"].read(meter, start=DAY, end=DAY + 31 * 86400, after=None, limit=10_000)
    assert len(series.times) == 2974
    with connection.cursor() as cursor:
        cursor.execute(f"EXPLAIN {read.captured_queries[-1]['sql']}")
        assert "Task Count: 1" in "\n".join(row[0] for row in cursor.fetchall())

    last_ids = {m.pk: ReadingChange.objects.filter(meter=m).order_by("-id").values_list("id", flat=True)[0] for m in meters}
    for meter in meters:
        with transaction.atomic():
            counts = upsert_readings(meters=[meter], batches=[rows(meter, 5, 50, value=2.0)], by=WriteBy("grpc", "service"))
        assert counts == WriteCounts(inserted=1, updated=1, writes=counts.writes)
        # Wherever its shard went, a meter's new changes come after its old ones.
        assert ReadingChange.objects.filter(meter=meter, id__lte=last_ids[meter.pk]).count() == 10
        assert ReadingChange.objects.filter(meter=meter, id__gt=last_ids[meter.pk]).count() == 2
    assert Reading.objects.count() == total + len(meters)
