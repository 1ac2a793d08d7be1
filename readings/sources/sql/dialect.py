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
    """Append equal-length numpy `columns` (name → array) to `table`: COPY on PostgreSQL,
    one executemany on SQLite."""
    names = ", ".join(columns)
    if is_postgresql():
        sink = pa.BufferOutputStream()
        # Arrow writes the shortest text that reads back to the same double, so values stay exact.
        pa_csv.write_csv(pa.table(columns), sink, write_options=pa_csv.WriteOptions(include_header=False))
        with cursor.copy(f"COPY {table} ({names}) FROM STDIN (FORMAT csv)") as copy:
            copy.write(sink.getvalue().to_pybytes())
    else:
        placeholders = ", ".join(["%s"] * len(columns))
        cursor.executemany(
            f"INSERT INTO {table} ({names}) VALUES ({placeholders})",
            zip(*(column.tolist() for column in columns.values())),
        )


def analyze(cursor, table: str) -> None:
    """Let the planner see a freshly loaded table (PostgreSQL plans a temporary table blind)."""
    if is_postgresql():
        cursor.execute(f"ANALYZE {table}")


# Past this many rows a read goes through PostgreSQL's binary COPY, which hands over the rows as
# one buffer for numpy; below it a plain query is quicker (COPY costs a round trip of its own).
MANY_ROWS = 20_000
_SERIES_ROW = np.dtype([("fields", ">i2"), ("time_size", ">i4"), ("time", ">i8"), ("value_size", ">i4"), ("value", ">f8")])
_COPY_HEADER, _COPY_TRAILER = 19, 2


def fetch_columns(sql: str, params, *, many: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """The (bigint, double) rows of `sql` as two numpy columns, int64 and float64."""
    with connection.cursor() as cursor:
        if many and is_postgresql():
            with cursor.copy(f"COPY ({sql}) TO STDOUT (FORMAT binary)", params) as copy:
                data = b"".join(copy)
            # Rows of two non-null fields of fixed size, between the format's header and trailer.
            rows = np.frombuffer(data, dtype=_SERIES_ROW, offset=_COPY_HEADER, count=(len(data) - _COPY_HEADER - _COPY_TRAILER) // _SERIES_ROW.itemsize)
            return rows["time"].astype(np.int64), rows["value"].astype(np.float64)
        cursor.execute(sql, params)
        rows = np.array(cursor.fetchall(), dtype=np.float64).reshape(-1, 2)
        # Epoch seconds pass through float64 exactly: they are far below 2**53.
        return rows[:, 0].astype(np.int64), rows[:, 1].copy()
