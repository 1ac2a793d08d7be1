"""The large stores the benchmarks read: generated with `manage.py generate_readings`, imported
with the project's own `manage.py import_readings` once and kept under --cache-dir, and the
queries a benchmark times beside the project's calls, issued straight to the store (psycopg /
sqlite3): the SQL the `sql` source runs for one meter's month.

Shared by scale_bench.py and outside_bench.py; nothing here imports the project's generated code.
"""
import json
import os
import sqlite3
import time
from pathlib import Path

import numpy as np
from common import REPO, manage, postgres_admin  # noqa: F401  (puts the repository on sys.path)

DAYS = 730  # two years a meter: 70,080 readings
MONTH = ("2019-06-01T00:00:00Z", "2019-07-01T00:00:00Z")
MONTH_DAYS = [1559347200 + 86400 * day for day in range(31)]


class Store:
    """A database the benchmark builds and reads: the filled one, or empty ones for comparison."""

    def __init__(self, kind: str, args, name: str):
        self.kind, self.args, self.name = kind, args, name
        base = args.postgres_url.rsplit("/", 1)[0]
        self.url = f"{base}/{name}" if kind == "postgresql" else f"sqlite:///{args.cache_dir / (name + '.sqlite3')}"
        self.env = {**os.environ, "DATABASE_URL": self.url, "DJANGO_LOG_LEVEL": "WARNING", "PYTHONUNBUFFERED": "1"}

    def create(self) -> None:
        self.drop()
        if self.kind == "postgresql":
            postgres_admin(self.args.postgres_url, f'CREATE DATABASE "{self.name}"')
        manage(self.env, "migrate", "--no-input", "--verbosity", "0")

    def drop(self) -> None:
        if self.kind == "postgresql":
            postgres_admin(self.args.postgres_url, f'DROP DATABASE IF EXISTS "{self.name}" WITH (FORCE)')
        else:
            for suffix in ("", "-wal", "-shm"):
                Path(self.url.removeprefix("sqlite:///") + suffix).unlink(missing_ok=True)

    def connect(self):
        if self.kind == "postgresql":
            import psycopg

            return psycopg.connect(self.url, autocommit=True)
        connection = sqlite3.connect(self.url.removeprefix("sqlite:///"), isolation_level=None)
        connection.create_function("REGEXP", 2, lambda pattern, text: __import__("re").search(pattern, text) is not None)
        return connection

    def query(self, sql: str, params=()):
        if self.kind == "sqlite":
            sql = sql.replace("%s", "?")
        with self.connect() as connection:
            cursor = connection.execute(sql, params)
            return cursor.fetchall() if cursor.description else []

    def readings(self) -> int:
        return self.query("SELECT COUNT(*) FROM readings_reading")[0][0]

    def forget_meter(self, name: str) -> None:
        """Delete a meter and all that refers to it, as the project deletes it."""
        manage(self.env, "shell", "-c", f"from readings.models import Meter; Meter.objects.filter(name={name!r}).delete()")


def generated(args, name: str, *, meters: int, days: int, start: str, seed: int) -> list[Path]:
    folder = args.cache_dir / name
    if not (folder / "done").exists():
        folder.mkdir(parents=True, exist_ok=True)
        manage({**os.environ}, "generate_readings", "--meters", str(meters), "--days", str(days), "--start", start,
               "--seed", str(seed), "--out", str(folder / "m.csv"), "--verbosity", "0")
        (folder / "done").write_text("")
    return sorted(folder.glob("m*.csv"))


def build(store: Store, files: list[Path]) -> dict:
    """The filled store, imported file by file with the project's command (once; then reused)."""
    stamp = store.args.cache_dir / f"{store.kind}-{store.name}.json"
    if stamp.exists():
        return json.loads(stamp.read_text())
    store.create()
    began = time.perf_counter()
    for low in range(0, len(files), 50):
        manage(store.env, "import_readings", *map(str, files[low:low + 50]), "--verbosity", "0")
    seconds = time.perf_counter() - began
    built = {"readings": store.readings(), "seconds": seconds}
    stamp.write_text(json.dumps(built))
    return built


# ---- One meter's month, straight to the store ---------------------------------------------------


def direct_calls(store: Store, meter: str):
    """The `sql` source's two queries for a month, issued from Python straight to the store."""
    connection = store.connect()
    mark = "%s" if store.kind == "postgresql" else "?"
    meter_id = connection.execute(f"SELECT id FROM readings_meter WHERE name = {mark}", [meter]).fetchone()[0]
    if store.kind == "postgresql":
        start, end = MONTH
        rows_sql = ("SELECT EXTRACT(EPOCH FROM time)::bigint, value FROM readings_reading WHERE meter_id = %s "
                    "AND time >= %s AND time < %s ORDER BY time LIMIT 10001")
        bucket_sql = ("SELECT width_bucket(EXTRACT(EPOCH FROM time), %s::double precision[]) - 1 AS bucket, COUNT(*), "
                      "SUM(value), MIN(value), MAX(value) FROM readings_reading WHERE meter_id = %s AND time >= %s "
                      "AND time < %s GROUP BY bucket")
        rows_params = [meter_id, start, end]
        bucket_params = [[float(e) for e in MONTH_DAYS], meter_id, start, end]
    else:
        start, end = (MONTH[0][:19].replace("T", " "), MONTH[1][:19].replace("T", " "))
        rows_sql = ("SELECT unixepoch(time), value FROM readings_reading WHERE meter_id = ? AND time >= ? AND time < ? "
                    "ORDER BY time LIMIT 10001")
        bucket_sql = ("SELECT CAST(b.key AS INTEGER), COUNT(r.value), SUM(r.value), MIN(r.value), MAX(r.value) "
                      "FROM json_each(?) AS b JOIN readings_reading AS r ON r.meter_id = ? "
                      "AND r.time >= datetime(json_extract(b.value, '$[0]'), 'unixepoch') "
                      "AND r.time < datetime(json_extract(b.value, '$[1]'), 'unixepoch') GROUP BY b.key")
        rows_params = [meter_id, start, end]
        bucket_params = [json.dumps(list(zip(MONTH_DAYS[:-1], MONTH_DAYS[1:]))), meter_id]

    def rows():
        return np.array(connection.execute(rows_sql, rows_params).fetchall(), dtype=np.float64)

    def buckets():
        return connection.execute(bucket_sql, bucket_params).fetchall()

    return rows, buckets, connection


