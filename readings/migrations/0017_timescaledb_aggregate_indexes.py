"""On TimescaleDB, drop the (meter_id, start) indexes that migration 0015 added to the continuous
aggregates; elsewhere, nothing.

The rollup reads bound each aggregate's rows by `bucket`, its materialization hypertable's
partitioning column, so that TimescaleDB plans only the chunks they touch
(readings/sources/sql/timescale.py), and TimescaleDB's own index of each aggregate, (meter_id,
bucket), serves them. The (meter_id, start) index then only took room: about a third of the
hourly aggregate's bytes.
"""
from django.db import migrations

AGGREGATES = ("readings_reading_hour", "readings_reading_day")


def _index_schema(cursor, name: str) -> str | None:
    cursor.execute("SELECT schemaname FROM pg_indexes WHERE indexname = %s", [name])
    row = cursor.fetchone()
    return row[0] if row else None


def _has_aggregates(connection) -> bool:
    if connection.vendor != "postgresql":
        return False
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(*) FROM pg_extension e, pg_class c WHERE e.extname = 'timescaledb' AND c.relname = ANY(%s)",
            [list(AGGREGATES)],
        )
        return cursor.fetchone()[0] == len(AGGREGATES)


def drop_start_indexes(apps, schema_editor):
    connection = schema_editor.connection
    if not _has_aggregates(connection):
        return
    with connection.cursor() as cursor:
        for name in AGGREGATES:
            schema = _index_schema(cursor, f"{name}_meter_start")
            if schema:
                cursor.execute(f'DROP INDEX "{schema}"."{name}_meter_start"')


def add_start_indexes(apps, schema_editor):
    connection = schema_editor.connection
    if not _has_aggregates(connection):
        return
    with connection.cursor() as cursor:
        for name in AGGREGATES:
            if not _index_schema(cursor, f"{name}_meter_start"):
                cursor.execute(f"CREATE INDEX {name}_meter_start ON {name} (meter_id, start)")


class Migration(migrations.Migration):

    dependencies = [
        ("readings", "0016_citus"),
    ]

    operations = [
        migrations.RunPython(drop_start_indexes, add_start_indexes, elidable=False),
    ]
