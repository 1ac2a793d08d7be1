"""What the write path does differently on a Citus coordinator (readings distributed by meter,
meters a reference table; see migration 0016), in one place.

- A write's staging table is a temporary table on the coordinator. Citus joins it with a
  distributed table by shipping one side to the other, and for an outer join whose outer side is
  that local table it ships the distributed side, the whole of it: so the store is joined only
  through the readings the write can touch (its meters, within the span of its rows), which Citus
  reads from those meters' shards alone.
- Writes into one meter are put one after another by an advisory lock on the coordinator, not
  by the meter's row lock (see `lock_meters_on_coordinator`).
- Change-log ids come from one sequence, evaluated on the coordinator: every statement that adds
  changes selects from the staging table, so Citus runs it as "pull to coordinator" and the
  coordinator takes each id. Workers hold the sequence too, with ranges of their own (their group
  id in the top 16 bits); an id from them would be larger than the coordinator's, and smaller
  than another worker's after a shard move, which is why nothing inserts changes on a worker.
  The migration's CHECK keeps ids in the coordinator's range.
"""
from collections.abc import Mapping
from contextlib import contextmanager

from django.db import IntegrityError, InternalError, connection


# Whether a database (by host, port and name) is a Citus coordinator: asked once per process.
_coordinators: dict[tuple, bool] = {}


def is_citus(database=connection) -> bool:
    """Whether Django's database is a Citus coordinator (the extension, and this node coordinates)."""
    if database.vendor != "postgresql":
        return False
    db = database.settings_dict
    key = (db.get("HOST"), db.get("PORT"), db.get("NAME"))
    if key not in _coordinators:
        with database.cursor() as cursor:
            cursor.execute("SELECT extname FROM pg_extension WHERE extname = 'citus'")
            found = cursor.fetchone() is not None
            if found:
                cursor.execute("SELECT citus_is_coordinator()")
                found = bool(cursor.fetchone()[0])
        _coordinators[key] = found
    return _coordinators[key]


def configure_connection(sender, connection, **kwargs) -> None:
    """Each new connection to a Citus coordinator modifies several shards one connection per
    worker: a statement over several meters' shards (deleting meters and, by cascade, their
    readings) is otherwise run in parallel, after which Citus refuses, in the same transaction,
    to modify a table that points at the meters (their writes, import runs)."""
    if is_citus(connection):
        with connection.cursor() as cursor:
            cursor.execute("SET citus.multi_shard_modify_mode TO 'sequential'")


def begin_write(cursor) -> None:
    """On Citus, one connection per worker for statements over several shards: a write also
    modifies the meters (a reference table) and its Write rows (which point at them), which Citus
    refuses after a parallel access to the distributed tables in the same transaction."""
    if is_citus():
        cursor.execute("SET LOCAL citus.multi_shard_modify_mode TO 'sequential'")


# The first key of the advisory locks that stand for meters' rows (the second is the meter's id).
METER_LOCK_CLASS = 0x6D74


def lock_meters_on_coordinator(cursor, meter_ids: list[int]) -> None:
    """Writes into one meter one after another, as the meter's row lock does on PostgreSQL: a
    transaction's advisory lock a meter, in id order, on the coordinator, which every write goes
    through. Not the row lock: Citus takes `SELECT ... FOR UPDATE` on a reference table as a lock
    of the whole table, which would put every write into every meter in one queue."""
    cursor.execute(
        "SELECT pg_advisory_xact_lock(%s, (id %% 2147483647)::int) FROM unnest(%s::bigint[]) WITH ORDINALITY AS m (id, n) "
        "ORDER BY n",
        [METER_LOCK_CLASS, meter_ids],
    )


@contextmanager
def meters_updated_together(cursor, meter_ids: list[int]):
    """Around an update of the meters' running figures (count, first and last reading, data
    version): on Citus, the meters' advisory locks (taken again if the write holds them already),
    and the update declared commutative, so that Citus takes its shard lock of the meters table
    as a row-exclusive lock, not an exclusive one held to commit. Otherwise every write into any
    meter waited for the one before to commit (measured: 95 writes/s with 4 or 8 writers, one
    at a time). Citus's exclusive lock guards the reference table's copies against two
    statements applied in different orders on different nodes; here two updates of one meter
    cannot run at once (its advisory lock), and updates of different meters touch different
    rows, so every copy ends the same. Every other update of meters (an edit, a deletion) still
    takes the exclusive lock, which waits for these."""
    if not is_citus():
        yield
        return
    lock_meters_on_coordinator(cursor, sorted(meter_ids))
    cursor.execute("SET LOCAL citus.all_modifications_commutative TO on")
    yield
    # Not in a `finally`: after an error the transaction (or savepoint) is rolled back, and the
    # setting with it; a statement sent then would only hide the error.
    cursor.execute("SET LOCAL citus.all_modifications_commutative TO off")


def spans_condition(spans: Mapping[int, tuple[int, int]], alias: str = "") -> str:
    """SQL true for the readings of each meter within its span (epoch seconds, both ends in):
    equalities on the distribution column, so Citus reads those meters' shards only."""
    prefix = f"{alias}." if alias else ""
    return "(" + " OR ".join(
        f"({prefix}meter_id = {int(meter_id)} AND {prefix}time >= to_timestamp({int(first)}) "
        f"AND {prefix}time <= to_timestamp({int(last)}))"
        for meter_id, (first, last) in sorted(spans.items())
    ) + ")"


def store_in_spans(table: str, spans: Mapping[int, tuple[int, int]]) -> str:
    """The readings of `table` a write of `spans` can touch, as a subquery to join with."""
    return f"(SELECT meter_id, time, value FROM {table} WHERE {spans_condition(spans)})"


def is_unique_violation(exc: Exception) -> bool:
    """Whether a database error is a unique violation: an IntegrityError, or on Citus, which relays
    a worker's unique violation as an internal error (SQLSTATE XX000) carrying the worker's message."""
    if isinstance(exc, IntegrityError):
        return True
    return isinstance(exc, InternalError) and str(exc).startswith("duplicate key value violates unique constraint")
