"""On a database with the TimescaleDB extension: readings in a hypertable, compressed by meter once
old, with continuous aggregates of UTC hours and days per meter. Elsewhere (plain PostgreSQL,
SQLite) nothing: the same migrations run unchanged on every database.

- `readings_reading` becomes a hypertable partitioned by `time` (its rows moved into chunks),
  chunks of TIMESCALE_CHUNK_DAYS (7 by default: a meter's week of 15-minute readings is 672 rows,
  one compressed batch of at most 1,000, and a year is 52 chunks).
- Chunks older than TIMESCALE_COMPRESS_AFTER_DAYS are compressed by a policy, segmented by
  meter and ordered by time (a meter's rows read back together, in order).
- `readings_reading_hour` and `readings_reading_day`: count, sum, min and max of each meter's
  readings per UTC hour and day, real-time (above what is materialized they are computed from the
  raw rows), refreshed by policies, not compressed (see below). Both are built on the raw rows:
  the extension's own invalidation logs then say exactly where each is stale (see
  readings/sources/sql/timescale.py).
- The change log stays a plain table: it is keyed by a bigserial id that its watches read by
  (meter, id) and pruned by commit time, which is not a column a hypertable could be partitioned
  by without adding it to the primary key; partitioned by id its chunks could not be dropped by
  age either (ids of different meters do not follow commit order). It holds CHANGE_LOG_DAYS of
  changes, which DELETE and autovacuum keep small.
"""
from django.conf import settings
from django.db import migrations

READINGS = "readings_reading"
HOUR = "readings_reading_hour"
DAY = "readings_reading_day"


def _has_timescaledb(connection) -> bool:
    if connection.vendor != "postgresql":
        return False
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1 FROM pg_extension WHERE extname = 'timescaledb'")
        return cursor.fetchone() is not None


def _aggregate(name: str, width: str) -> str:
    # One row per meter and UTC bucket: `bucket` its first instant, `start` the same in epoch
    # seconds, the key the rollup tables have (readings/sources/sql/rollups.py reads either),
    # indexed with the meter. WITH NO DATA: a migration runs in a transaction, which materializing
    # cannot; the refresh policies fill them and, until then, real-time aggregation answers from
    # the raw rows.
    bucket = f"time_bucket(INTERVAL '{width}', time)"
    return (
        f"CREATE MATERIALIZED VIEW {name} WITH (timescaledb.continuous, timescaledb.materialized_only = false) AS "
        f"SELECT meter_id, {bucket} AS bucket, EXTRACT(EPOCH FROM {bucket} - TIMESTAMPTZ '1970-01-01 00:00:00+00')::bigint AS start, "
        "count(*) AS count, sum(value) AS total, min(value) AS low, max(value) AS high "
        f"FROM {READINGS} GROUP BY meter_id, {bucket} WITH NO DATA"
    )


def to_timescaledb(apps, schema_editor):
    if not _has_timescaledb(schema_editor.connection):
        return
    chunk_days = settings.TIMESCALE_CHUNK_DAYS
    compress_after = settings.TIMESCALE_COMPRESS_AFTER_DAYS
    run = schema_editor.execute
    # The primary key (meter_id, time) serves one meter's ranges and chunks narrow time ranges,
    # so no index of time is added.
    run(
        f"SELECT create_hypertable('{READINGS}', by_range('time', %s * INTERVAL '1 day'), "
        "create_default_indexes => false, migrate_data => true)",
        [chunk_days],
    )
    run(
        f"ALTER TABLE {READINGS} SET (timescaledb.compress, timescaledb.compress_segmentby = 'meter_id', "
        "timescaledb.compress_orderby = 'time')"
    )
    run(f"SELECT add_compression_policy('{READINGS}', compress_after => %s * INTERVAL '1 day')", [compress_after])
    for name, width, end_offset, every in ((HOUR, "1 hour", "1 hour", "30 minutes"), (DAY, "1 day", "1 hour", "1 hour")):
        run(_aggregate(name, width))
        run(f"CREATE INDEX {name}_meter_start ON {name} (meter_id, start)")
        # From the beginning (start_offset NULL): a refresh does only what was invalidated, so late
        # writes anywhere are picked up; up to the last whole bucket an hour ago.
        run(
            f"SELECT add_continuous_aggregate_policy('{name}', start_offset => NULL, "
            f"end_offset => INTERVAL '{end_offset}', schedule_interval => INTERVAL '{every}')"
        )
    # Neither aggregate is compressed: long aggregates probe the hourly one for a few hours at
    # each window's ends, and each probe of a compressed chunk decompresses a meter's batch (a
    # year of Berlin days took 484 ms from a compressed hourly aggregate, 38 ms from a plain one).
    # Uncompressed it takes more room than the compressed readings it sums up (34 bytes a reading
    # against 12.5); the daily one is 24 times smaller.


def from_timescaledb(apps, schema_editor):
    # The aggregates go; the hypertable stays one (its rows cannot be moved back in place).
    if not _has_timescaledb(schema_editor.connection):
        return
    for name in (DAY, HOUR):
        schema_editor.execute(f"DROP MATERIALIZED VIEW IF EXISTS {name}")


class Migration(migrations.Migration):

    dependencies = [
        ("readings", "0014_rollups"),
    ]

    operations = [
        migrations.RunPython(to_timescaledb, from_timescaledb, elidable=False),
    ]
