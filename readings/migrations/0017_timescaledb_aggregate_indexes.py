"""On TimescaleDB, drop the (meter_id, start) indexes that migration 0015 added to the continuous
aggregates; elsewhere, nothing.

The rollup reads bound each aggregate's rows by `bucket`, its materialization hypertable's
partitioning column, so that TimescaleDB plans only the chunks they touch
(readings/sources/sql/timescale.py), and TimescaleDB's own index of each aggregate, (meter_id,
bucket), serves them. The (meter_id, start) index then only took room: the hourly aggregate
took 91 B a reading with it and 75 without, at a reading every 30 minutes.
"""
from django.db import migrations

AGGREGATES = ("readings_reading_hour", "readings_reading_day")


def _start_indexes(schema_editor, *, wanted: bool) -> None:
    """Drop (or, going back, make again) each aggregate's (meter_id, start) index, where the
    database has the aggregates."""
    connection = schema_editor.connection
    if connection.vendor != "postgresql":
        return
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT c.relname, i.schemaname FROM pg_class AS c JOIN pg_extension AS e ON e.extname = 'timescaledb' "
            "LEFT JOIN pg_indexes AS i ON i.indexname = c.relname || '_meter_start' WHERE c.relname = ANY(%s)",
            [list(AGGREGATES)],
        )
        for name, schema in cursor.fetchall():
            if schema and not wanted:
                cursor.execute(f'DROP INDEX "{schema}"."{name}_meter_start"')
            elif not schema and wanted:
                cursor.execute(f"CREATE INDEX {name}_meter_start ON {name} (meter_id, start)")


def drop_start_indexes(apps, schema_editor):
    _start_indexes(schema_editor, wanted=False)


def add_start_indexes(apps, schema_editor):
    _start_indexes(schema_editor, wanted=True)


class Migration(migrations.Migration):

    dependencies = [
        ("readings", "0016_citus"),
    ]

    operations = [
        migrations.RunPython(drop_start_indexes, add_start_indexes, elidable=False),
    ]
