"""On a Citus coordinator, spread the readings over the workers by meter; elsewhere, nothing.

- Distributed by `meter_id`, co-located (a meter's readings, changes and rollups share a node, so
  a write's joins and a one-meter read stay on one shard): `readings_reading`,
  `readings_readingchange`, and the rollup tables `readings_rollup_hour` and `readings_rollup_day`
  where they exist.
- Reference tables (a copy on every node, so that the distributed tables' foreign keys can point at
  them and joins with them stay on the worker): `readings_meter` and `accounts_account`, which a
  meter points at.
- Everything else stays on the coordinator: Django's tables, users and sessions, OAuth, import
  runs, writes, rejected messages. Those that point at a meter or an account keep their foreign
  keys: Citus makes them "citus local tables" (still on the coordinator, known to its metadata),
  and with them every table their keys reach.

Citus wants the distribution column in every unique constraint: the change log's database key
becomes (meter_id, id), which also serves what a watch reads (a meter's changes after an id), so
the (meter, id) index goes. Django still treats `id` alone as the key; it stays unique, being taken
from one sequence, evaluated on the coordinator (see readings/sources/sql/citus.py).

Idempotent (tables already distributed are left alone) and not undone: a database made plain again
is a dump and restore, not a migration.
"""
from django.db import migrations

# 32 shards a table: a one-meter read or write touches one whatever the count; a query of every
# meter runs 32 tasks. 32 leaves room to spread over up to 32 workers by moving shards (beyond,
# citus_split_shard_by_split_points splits them) while keeping the per-task cost of scans of all
# meters small on a few nodes.
SHARD_COUNT = 32
DISTRIBUTED = ["readings_reading", "readings_readingchange", "readings_rollup_hour", "readings_rollup_day"]
REFERENCE = ["accounts_account", "readings_meter"]
CHANGES = "readings_readingchange"


def is_citus_coordinator(cursor) -> bool:
    cursor.execute("SELECT 1 FROM pg_extension WHERE extname = 'citus'")
    if cursor.fetchone() is None:
        return False
    cursor.execute("SELECT citus_is_coordinator()")
    return bool(cursor.fetchone()[0])


def _existing(cursor, tables: list[str]) -> list[str]:
    cursor.execute("SELECT t FROM unnest(%s::text[]) AS t WHERE to_regclass(t) IS NOT NULL", [tables])
    found = {row[0] for row in cursor.fetchall()}
    return [table for table in tables if table in found]


def _citus_kind(cursor, table: str) -> str | None:
    """'distributed', 'reference', 'local' (a citus local table) or None (a plain table)."""
    cursor.execute(
        "SELECT partmethod, repmodel FROM pg_dist_partition WHERE logicalrelid = %s::regclass", [table]
    )
    row = cursor.fetchone()
    if row is None:
        return None
    return {"h": "distributed", "n": "reference" if row[1] == "t" else "local"}.get(row[0], "distributed")


def _check_cluster(cursor) -> None:
    cursor.execute("SELECT count(*) FILTER (WHERE groupid = 0), count(*) FILTER (WHERE groupid <> 0) FROM pg_dist_node "
                   "WHERE noderole = 'primary'")
    coordinator, workers = cursor.fetchone()
    if not coordinator or not workers:
        raise RuntimeError(
            "this database has Citus but is not yet a cluster: register the coordinator "
            "(SELECT citus_set_coordinator_host('<host>', <port>)) and at least one worker "
            "(SELECT citus_add_node('<host>', <port>)) in this database, then migrate again"
        )


def distribute(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        return
    with schema_editor.connection.cursor() as cursor:
        if not is_citus_coordinator(cursor):
            return
        _check_cluster(cursor)
        distributed = [t for t in _existing(cursor, DISTRIBUTED) if _citus_kind(cursor, t) != "distributed"]
        # A table to distribute leaves the foreign-key graph while the reference tables are made
        # (Citus would make it a citus local table on the way, which it cannot do for a table with
        # dropped columns, as readings_reading is); its keys come back once it is distributed.
        keys = []
        if distributed:
            cursor.execute(
                "SELECT conrelid::regclass::text, conname, pg_get_constraintdef(oid) FROM pg_constraint "
                "WHERE contype = 'f' AND conrelid = ANY(%s::regclass[])",
                [distributed],
            )
            keys = cursor.fetchall()
            for table, name, _ in keys:
                cursor.execute(f'ALTER TABLE {table} DROP CONSTRAINT "{name}"')
        for table in REFERENCE:
            if _citus_kind(cursor, table) != "reference":
                cursor.execute("SELECT create_reference_table(%s)", [table])
        if CHANGES in distributed:
            cursor.execute(f"ALTER TABLE {CHANGES} DROP CONSTRAINT {CHANGES}_pkey")
            cursor.execute("DROP INDEX IF EXISTS readingchange_meter_id_idx")
            cursor.execute(f"ALTER TABLE {CHANGES} ADD CONSTRAINT {CHANGES}_pkey PRIMARY KEY (meter_id, id)")
            # Ids from the coordinator's sequence only: a worker's own range starts at its group
            # id times 2**48, so an id taken there would break the order of a meter's changes.
            cursor.execute(f"ALTER TABLE {CHANGES} ADD CONSTRAINT readingchange_id_from_coordinator CHECK (id < 281474976710656)")
        for table in distributed:
            if table == DISTRIBUTED[0]:
                cursor.execute("SELECT create_distributed_table(%s, 'meter_id', shard_count => %s)", [table, SHARD_COUNT])
            else:
                cursor.execute(
                    "SELECT create_distributed_table(%s, 'meter_id', colocate_with => %s)", [table, DISTRIBUTED[0]]
                )
        for table, name, definition in keys:
            cursor.execute(f'ALTER TABLE {table} ADD CONSTRAINT "{name}" {definition}')


class Migration(migrations.Migration):

    dependencies = [
        ("readings", "0015_timescaledb"),
    ]

    operations = [
        migrations.RunPython(distribute, migrations.RunPython.noop, elidable=False),
    ]
