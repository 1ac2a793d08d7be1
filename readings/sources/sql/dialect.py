"""The SQL that differs between PostgreSQL and SQLite, in one place: times as epoch seconds in
and out, and bulk loading of rows into a table."""
import sqlite3
from datetime import UTC, datetime

import numpy as np
import pyarrow as pa
import pyarrow.csv as pa_csv
from django.db import connection


def is_postgresql() -> bool:
    return connection.vendor == "postgresql"


def epoch_of(column: str) -> str:
    """SQL giving the epoch seconds (an integer) of a datetime column."""
    if is_postgresql():
        return f"EXTRACT(EPOCH FROM {column})::bigint"
    # Django stores SQLite datetimes as UTC text. unixepoch() (SQLite 3.38+) reads it fastest.
    if sqlite3.sqlite_version_info >= (3, 38):
        return f"unixepoch({column})"
    return f"CAST(strftime('%%s', {column}) AS INTEGER)"  # %% survives Django's %s placeholders


def precise_epoch_of(column: str) -> str:
    """SQL giving the epoch seconds of a datetime column with its fraction (a double)."""
    if is_postgresql():
        return f"EXTRACT(EPOCH FROM {column})::double precision"
    return f"((julianday({column}) - 2440587.5) * 86400.0)"


def time_of(epoch_sql: str) -> str:
    """SQL turning epoch seconds into the value Django stores in a DateTimeField."""
    if is_postgresql():
        return f"to_timestamp({epoch_sql})"
    # Django keeps SQLite datetimes as 'YYYY-MM-DD HH:MM:SS' text in UTC; datetime() writes just that.
    return f"datetime({epoch_sql}, 'unixepoch')"


def time_parameter(epoch: int):
    """An epoch as Django would pass a DateTimeField value to this database."""
    return connection.ops.adapt_datetimefield_value(datetime.fromtimestamp(epoch, UTC))


def load_rows(cursor, table: str, columns: dict) -> None:
    """Append numpy `columns` (name → array, all of one length, or an int that every row has) to
    `table`: COPY on PostgreSQL, one executemany on SQLite."""
    names = ", ".join(columns)
    if is_postgresql():
        rows = next(len(column) for column in columns.values() if isinstance(column, np.ndarray))
        arrays = {
            name: column if isinstance(column, np.ndarray) else np.full(rows, column, dtype=np.int64)
            for name, column in columns.items()
        }
        sink = pa.BufferOutputStream()
        # Arrow writes the shortest text that reads back to the same double, so values stay exact.
        pa_csv.write_csv(pa.table(arrays), sink, write_options=pa_csv.WriteOptions(include_header=False))
        with cursor.copy(f"COPY {table} ({names}) FROM STDIN (FORMAT csv)") as copy:
            copy.write(sink.getvalue().to_pybytes())
    else:
        # An int every row has is written into the statement: a parameter fewer to bind per row.
        placeholders = ", ".join("%s" if isinstance(column, np.ndarray) else str(int(column)) for column in columns.values())
        cursor.executemany(
            f"INSERT INTO {table} ({names}) VALUES ({placeholders})",
            zip(*(column.tolist() for column in columns.values() if isinstance(column, np.ndarray))),
        )


def analyze(cursor, table: str) -> None:
    """Let the planner see a freshly loaded table (PostgreSQL plans a temporary table blind)."""
    if is_postgresql():
        cursor.execute(f"ANALYZE {table}")


def analyze_if_grown(table: str, added: int) -> None:
    """ANALYZE `table` on PostgreSQL when `added` rows are many beside what its statistics say it
    holds (never analyzed, or more than a tenth more, as autovacuum's default threshold). Without this, a freshly imported table is planned as if it held a few hundred rows (a
    stream of a meter's 1M readings sorted every remaining reading again for each batch) until
    autovacuum comes by, and never where it is off."""
    if not is_postgresql() or added <= 0:
        return
    with connection.cursor() as cursor:
        cursor.execute("SELECT reltuples FROM pg_class WHERE oid = %s::regclass", [table])
        (estimate,) = cursor.fetchone()
        if estimate < 0 or added > 50 + 0.1 * estimate:
            analyze(cursor, table)


def fetch_columns(sql: str, params) -> tuple[np.ndarray, np.ndarray]:
    """The (bigint, double) rows of `sql`, in its order, as two numpy columns: int64 and float64."""
    with connection.cursor() as cursor:
        if is_postgresql():
            # PostgreSQL packs the columns into two byte strings (the binary send format of each
            # value, back to back): two objects to hand over instead of two per row. An aggregate
            # takes a sorted subquery's rows in their order; a check below makes sure.
            cursor.execute(
                f"SELECT string_agg(int8send(e), ''), string_agg(float8send(v), '') FROM ({sql}) AS rows (e, v)", params
            )
            packed_times, packed_values = cursor.fetchone()
            if packed_times is None:
                return np.empty(0, dtype=np.int64), np.empty(0, dtype=np.float64)
            times = np.frombuffer(packed_times, dtype=">i8").astype(np.int64)
            values = np.frombuffer(packed_values, dtype=">f8").astype(np.float64)
            if len(times) > 1 and not np.all(np.diff(times) > 0):
                order = np.argsort(times, kind="stable")
                times, values = times[order], values[order]
            return times, values
        cursor.execute(sql, params)
        rows = np.array(cursor.fetchall(), dtype=np.float64).reshape(-1, 2)
        # Epoch seconds pass through float64 exactly: they are far below 2**53.
        return rows[:, 0].astype(np.int64), rows[:, 1].copy()
