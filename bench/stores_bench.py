"""Stores benchmark: the same generated readings in every store the project serves from, each
figure through the project beside the same question asked straight to the store.

The data (generated once under --cache-dir with the project's generator, `readings.generate`):
--meters meters (500) of two years (2019-2020) at one reading every --step minutes (30: 35,040
readings a meter, 17.5M in all), plus the meter `decade`, ten years (2011-2020) at the same step,
which the aggregate figures read. --scale multiplies the meters (0.02: 10 meters, a run of a
couple of minutes). The stores:

- sqlite: a SQLite file; postgresql: a database `sb_postgresql` on --postgres-url (the machine's);
- timescaledb: a TimescaleDB server of its own; measured as migrated and imported, then again
  after every chunk is compressed (`timescaledb-compressed`), when the readings are a hypertable;
- citus: a coordinator and two workers of its own;
  both run with the durability and memory settings of the PostgreSQL on --postgres-url (fsync,
  synchronous commit, shared buffers...), not the test clusters' throwaway ones;
- influxdb: an influxd of its own (testing/influxd.py), meters' records in a SQLite file;
- csv: the generated files served as they are by the `csv` source.

Every relational store is made by the project's migrations (whatever they do on that engine) and
filled with `manage.py import_readings` (InfluxDB: `manage.py seed_influx --no-mirror`), processes
as a user runs them, 50 files a process: readings/s. Then bytes on disk per reading (the readings
table with its indexes; a hypertable with its chunks; a distributed table with its shards; InfluxDB's
data and WAL folders; the files). Then, through `manage.py grpcrunserver` (a process, DJANGO_DEBUG=0,
as a user runs it) and a client in this process, beside the same question straight to the store
(SQL over psycopg / sqlite3, InfluxQL over HTTP, pyarrow's read of the file), interleaved call by
call for --rounds rounds, medians:

- one meter's month of readings (ListReadings of `decade`, June 2019);
- a month of days, a year of days (2019), ten years of months (2011-2020): AggregateReadings of
  `decade` in UTC (the straight query: GROUP BY the day or month of the raw readings);
- a live write's commit latency: WriteReadings of one reading (a new time each call) beside an
  INSERT ... ON CONFLICT of one reading in autocommit (InfluxDB: one line posted);
- 16 concurrent clients, each its own channel (its own connection straight to the store), each
  asking for a month of readings of a meter of its own, in --load-seconds phases, the project's and
  the store's alternating: p50 / p99 and calls/s;
- an empty call (gRPC health Check; straight: SELECT 1, InfluxDB's /ping), the floor of each;
- last (the store grows by its rows): the ten-year meter's file imported again as a new meter by
  the project (a process) beside the store's own bulk load of the same rows (COPY into the readings
  table; SQLite executemany; InfluxDB line protocol), alternating, readings/s.

Goals: TimescaleDB compressed bytes per reading <= 1/5 of PostgreSQL's; on PostgreSQL and
TimescaleDB ten years of months <= 10x a month of days and a year of days <= 3x a month of days;
Citus's one-meter month (readings and days) <= 1.5x PostgreSQL's, its import >= 0.7x PostgreSQL's.

    .venv/bin/python bench/stores_bench.py                     # 17.5M readings, every store
    .venv/bin/python bench/stores_bench.py --scale 0.02        # 10 meters: a couple of minutes
    .venv/bin/python bench/stores_bench.py --stores postgresql timescaledb --scale 0.2
"""
import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
import threading
import time
import traceback
from datetime import date, datetime, timezone
from pathlib import Path

import numpy as np
from common import manage, postgres_admin, start_server, ts  # puts the repository on sys.path

STORES = ["sqlite", "postgresql", "timescaledb", "citus", "influxdb", "csv"]
TOKEN = "stores-bench-write"  # a service token: reads and writes every meter
WRITER = (("authorization", f"Bearer {TOKEN}"),)
LONG = "decade"
WINDOWS = {  # figure: (start, end, window)
    "month of readings": ("2019-06-01", "2019-07-01", None),
    "month of days": ("2019-06-01", "2019-07-01", "WINDOW_DAY"),
    "year of days": ("2019-01-01", "2020-01-01", "WINDOW_DAY"),
    "ten years of months": ("2011-01-01", "2021-01-01", "WINDOW_MONTH"),
}
GOAL_COMPRESSED, GOAL_DECADE, GOAL_YEAR, GOAL_CITUS_MONTH, GOAL_CITUS_IMPORT = 1 / 5, 10.0, 3.0, 1.5, 0.7
CLIENTS = 16
STRAIGHT_LOAD = {"sqlite": "executemany in one transaction", "influxdb": "line protocol, 5,000 a request"}
EMPTY = "an empty call"  # the floor: gRPC health Check; straight: SELECT 1, InfluxDB's /ping


def epoch(day: str) -> int:
    return int(datetime.fromisoformat(day).replace(tzinfo=timezone.utc).timestamp())


def percentile(samples: list[float], fraction: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(len(ordered) * fraction))]


# ---- The data ---------------------------------------------------------------------------------


def generate(folder: Path, meters: int, step: int) -> list[Path]:
    """Files of `meters` meters of two years and the ten-year meter, one reading every `step`
    minutes (the generator's 15-minute readings thinned out), made once."""
    from readings.generate import synthetic_readings, write_readings_csv

    done = folder / "done"
    if not done.exists():
        folder.mkdir(parents=True, exist_ok=True)
        plan = [(f"m-{i + 1:03d}", 730, date(2019, 1, 1), 1, i) for i in range(meters)]
        plan.append((LONG, 3653, date(2011, 1, 1), 2, 0))
        for name, days, start, seed, index in plan:
            times, values = synthetic_readings(days=days, start=start, seed=seed, meter_index=index)
            keep = (times.astype("datetime64[m]").astype(np.int64) % step) == 0
            write_readings_csv(folder / f"{name}.csv", times[keep], values[keep])
        done.write_text("")
    return sorted(folder.glob("*.csv"))


def count_rows(files: list[Path]) -> int:
    return sum(sum(1 for _ in path.open()) - 1 for path in files)


# ---- Servers of their own --------------------------------------------------------------------


# Settings the clusters take from the PostgreSQL they are compared with: the clusters are tuned for
# throwaway test data (no fsync, no synchronous commit), which would flatter their writes.
SAME_AS_POSTGRESQL = ("fsync", "synchronous_commit", "full_page_writes", "shared_buffers", "work_mem",
                      "maintenance_work_mem", "max_wal_size", "effective_cache_size", "random_page_cost")


def postgresql_settings(url: str) -> dict[str, str]:
    import psycopg

    with psycopg.connect(url) as connection:
        rows = connection.execute("SELECT name, setting, unit FROM pg_settings WHERE name = ANY(%s)",
                                  [list(SAME_AS_POSTGRESQL)]).fetchall()
    # Memory settings in their units (8kB pages, kB), as postgresql.conf takes them.
    return {name: f"{int(setting) * 8}kB" if unit == "8kB" else f"{setting}{unit or ''}" for name, setting, unit in rows}


def start_cluster(extension: str, workers: int, settings: dict[str, str]):
    """A TimescaleDB server or a Citus coordinator with `workers` workers, database `sb_<extension>`
    prepared in it (testing/pgclusters.py), its nodes run with `settings`."""
    from testing.pgclusters import start_cluster as start

    return start(extension, workers=workers, database=f"sb_{extension}", settings=settings)


# ---- A store ----------------------------------------------------------------------------------


class Store:
    def __init__(self, kind: str, args, work: Path):
        self.kind, self.args, self.work = kind, args, work
        self.cluster = self.influxd = None
        self.env = {**os.environ, "DJANGO_LOG_LEVEL": "WARNING", "PYTHONUNBUFFERED": "1", "DJANGO_DEBUG": "0",
                    "GRPC_WRITE_TOKENS": TOKEN}
        self.engine = "sqlite" if kind in ("sqlite", "influxdb", "csv") else "postgresql"

    # -- lifecycle

    def start(self) -> None:
        if self.kind == "postgresql":
            self.url = self.args.postgres_url.rsplit("/", 1)[0] + "/sb_postgresql"
            postgres_admin(self.args.postgres_url, 'DROP DATABASE IF EXISTS "sb_postgresql" WITH (FORCE)')
            postgres_admin(self.args.postgres_url, 'CREATE DATABASE "sb_postgresql"')
        elif self.kind in ("timescaledb", "citus"):
            self.cluster = start_cluster(self.kind, 2 if self.kind == "citus" else 0,
                                         postgresql_settings(self.args.postgres_url))
            self.url = self.cluster.url()
        else:
            self.url = f"sqlite:///{self.work / (self.kind + '.sqlite3')}"
        self.env["DATABASE_URL"] = self.url
        if self.kind == "influxdb":
            from testing.influxd import InfluxServer

            self.influxd = InfluxServer(self.work / "influxd", auth=False)
            self.influxd.start()
            self.env |= {"INFLUXDB_URL": self.influxd.url, "INFLUXDB_DATABASE": "sb_influxdb"}
        if self.kind == "csv":
            self.env["READINGS_CSV_DIRECTORY"] = str(self.args.data)
        manage(self.env, "migrate", "--no-input", "--verbosity", "0")

    def stop(self) -> None:
        if self.influxd:
            self.influxd.stop()
        if self.cluster:
            self.cluster.stop()
        if self.kind == "postgresql":
            postgres_admin(self.args.postgres_url, 'DROP DATABASE IF EXISTS "sb_postgresql" WITH (FORCE)')

    def connect(self):
        if self.engine == "postgresql":
            import psycopg

            return psycopg.connect(self.url, autocommit=True)
        import sqlite3

        return sqlite3.connect(self.url.removeprefix("sqlite:///"), isolation_level=None, check_same_thread=False)

    def sql(self, statement: str, params=()):
        connection = self.connect()
        try:
            if self.engine == "sqlite":
                statement = statement.replace("%s", "?")
            cursor = connection.execute(statement, params)
            return cursor.fetchall() if cursor.description else []
        finally:
            connection.close()

    def one(self, statement: str, params=()):
        rows = self.sql(statement, params)
        return rows[0][0] if rows else None

    # -- what the engine has

    def is_hypertable(self) -> bool:
        return self.kind == "timescaledb" and bool(self.one(
            "SELECT count(*) FROM timescaledb_information.hypertables WHERE hypertable_name = 'readings_reading'"))

    def is_distributed(self) -> bool:
        return self.kind == "citus" and bool(self.one(
            "SELECT count(*) FROM pg_dist_partition WHERE logicalrelid = 'readings_reading'::regclass"))

    def shape(self) -> str:
        if self.kind == "timescaledb":
            return "hypertable" if self.is_hypertable() else "a plain table (no hypertable: no migration made one)"
        if self.kind == "citus":
            if not self.is_distributed():
                return "a plain table on the coordinator (no migration distributed it)"
            shards = self.one("SELECT count(*) FROM pg_dist_shard WHERE logicalrelid = 'readings_reading'::regclass")
            return f"distributed, {shards} shards over {len(self.cluster.workers)} workers"
        return ""

    # -- filling

    def load(self, files: list[Path]) -> float:
        """Seconds to fill the store as a user does (processes of 50 files each)."""
        if self.kind == "csv":
            manage(self.env, "shell", "-c",
                   "from readings.models import Meter; Meter.objects.bulk_create([Meter(name=n, source='csv') "
                   f"for n in {[path.stem for path in files]!r}])")
            return float("nan")
        began = time.perf_counter()
        for low in range(0, len(files), 50):
            batch = list(map(str, files[low:low + 50]))
            if self.kind == "influxdb":
                manage(self.env, "seed_influx", *batch, "--no-mirror", "--create-database", "--verbosity", "0")
            else:
                manage(self.env, "import_readings", *batch, "--verbosity", "0")
        return time.perf_counter() - began

    def settle(self) -> str:
        """What a running deployment's background jobs would have done by now: statistics, and on
        TimescaleDB the continuous aggregates refreshed (their policies' work). Returns a note."""
        if self.engine != "postgresql":
            return ""
        self.sql("VACUUM ANALYZE")
        notes = []
        if self.kind == "timescaledb":
            views = [row[0] for row in self.sql(
                "SELECT view_name FROM timescaledb_information.continuous_aggregates ORDER BY view_name")]
            for view in sorted(views, key=lambda name: "day" in name):  # hours before days
                began = time.perf_counter()
                self.sql(f"CALL refresh_continuous_aggregate('{view}', NULL, NULL)")
                notes.append(f"{view} refreshed in {time.perf_counter() - began:.1f} s")
        return "; ".join(notes)

    def compress(self) -> float:
        began = time.perf_counter()
        self.sql("SELECT count(compress_chunk(c, if_not_compressed => true)) FROM show_chunks('readings_reading') c")
        self.sql("VACUUM ANALYZE")
        return time.perf_counter() - began

    def size(self) -> int:
        """Bytes on disk of the readings, with their indexes."""
        if self.kind == "csv":
            return sum(path.stat().st_size for path in self.args.data.glob("*.csv"))
        if self.kind == "influxdb":  # TSM files and the WAL not yet compacted into them, as the seed left them
            folders = [self.influxd.root / part / "sb_influxdb" for part in ("data", "wal")]
            return sum(f.stat().st_size for folder in folders for f in folder.rglob("*") if f.is_file())
        return self.table_bytes("readings_reading")

    def rollup_size(self) -> int:
        """Bytes of the rollups kept beside the readings: the rollup tables, TimescaleDB's
        continuous aggregates."""
        if self.kind in ("csv", "influxdb"):
            return 0
        tables = ["readings_rollup_hour", "readings_rollup_day"]
        aggregates = 0
        if self.kind == "timescaledb":  # their materialization hypertables, in TimescaleDB's own schema
            aggregates = self.one("SELECT coalesce(sum(hypertable_size(format('%%I.%%I', materialization_hypertable_schema, "
                                  "materialization_hypertable_name)::regclass)), 0) "
                                  "FROM timescaledb_information.continuous_aggregates")
        return aggregates + sum(self.table_bytes(table) for table in tables)

    def table_bytes(self, table: str) -> int:
        if self.engine == "sqlite":
            return self.one("SELECT coalesce(sum(pgsize), 0) FROM dbstat WHERE name IN "
                            "(SELECT name FROM sqlite_master WHERE tbl_name = %s)", [table])
        if not self.one("SELECT to_regclass(%s) IS NOT NULL", [table]):
            return 0
        if self.kind == "timescaledb" and self.one(
                "SELECT count(*) FROM timescaledb_information.hypertables WHERE hypertable_name = %s", [table]):
            return self.one("SELECT hypertable_size(%s::regclass)", [table])
        if self.kind == "citus" and self.one(
                "SELECT count(*) FROM pg_dist_partition WHERE logicalrelid = %s::regclass", [table]):
            return self.one("SELECT citus_total_relation_size(%s::regclass)", [table])
        return self.one("SELECT pg_total_relation_size(%s::regclass)", [table])

    def readings(self) -> int:
        if self.kind in ("csv", "influxdb"):
            return count_rows(sorted(self.args.data.glob("*.csv")))
        return self.one("SELECT count(*) FROM readings_reading")

    # -- a new meter's file: the project's import beside the store's own bulk load

    def import_new(self, path: Path, meter: str) -> float:
        """Seconds of the project's import of `path` as a new meter (a process, as a user runs it)."""
        began = time.perf_counter()
        if self.kind == "influxdb":
            manage(self.env, "seed_influx", str(path), "--meter", meter, "--no-mirror", "--verbosity", "0")
        else:
            manage(self.env, "import_readings", str(path), "--meter", meter, "--verbosity", "0")
        return time.perf_counter() - began

    def load_straight(self, path: Path, meter: str) -> float:
        """Seconds of the same rows loaded straight into the same store as a new meter: COPY into the
        readings table (SQLite: executemany in one transaction; InfluxDB: line protocol posted in
        batches of 5,000), the rows prepared beforehand."""
        import pyarrow.csv as pa_csv

        table = pa_csv.read_csv(path, convert_options=pa_csv.ConvertOptions(column_types={"time": "timestamp[s]"}))
        epochs = table.column("time").to_numpy().astype("datetime64[s]").astype(np.int64)
        values = table.column("meterusage").to_numpy()
        if self.kind == "influxdb":
            import requests

            lines = [f"meter_usage,meter={meter} value={v!r} {t}\n" for t, v in zip(epochs.tolist(), values.tolist())]
            bodies = ["".join(lines[i:i + 5000]).encode() for i in range(0, len(lines), 5000)]
            session = requests.Session()
            began = time.perf_counter()
            for body in bodies:
                session.post(f"{self.influxd.url}/write", params={"db": "sb_influxdb", "precision": "s"},
                             data=body).raise_for_status()
            return time.perf_counter() - began
        manage(self.env, "shell", "-c", f"from readings.models import Meter; Meter.objects.create(name={meter!r})")
        meter_id = self.one("SELECT id FROM readings_meter WHERE name = %s", [meter])
        stamps = np.datetime_as_string(epochs.astype("datetime64[s]"), unit="s")
        connection = self.connect()
        try:
            if self.engine == "postgresql":
                text = "".join(f"{meter_id}\t{t}+00\t{v!r}\n" for t, v in zip(stamps, values.tolist()))
                began = time.perf_counter()
                with connection.cursor().copy("COPY readings_reading (meter_id, time, value) FROM STDIN") as copy:
                    copy.write(text)
            else:
                rows = [(meter_id, t.replace("T", " "), v) for t, v in zip(stamps, values.tolist())]
                began = time.perf_counter()
                connection.execute("BEGIN")
                connection.executemany("INSERT INTO readings_reading (meter_id, time, value) VALUES (?, ?, ?)", rows)
                connection.execute("COMMIT")
            return time.perf_counter() - began
        finally:
            connection.close()

    # -- the same questions, straight to the store

    def direct(self):
        """A callable per figure that asks the store itself, each with its own connection."""
        if self.kind == "csv":
            return CsvDirect(self.args.data)
        if self.kind == "influxdb":
            return InfluxDirect(self.influxd.url, "sb_influxdb")
        return SqlDirect(self)


class SqlDirect:
    """The straight queries: a meter's rows, and GROUP BY the UTC day or month of its raw rows."""

    def __init__(self, store: Store):
        self.store, self.engine = store, store.engine
        self.connection = store.connect()
        if self.engine == "postgresql":
            self.connection.execute("SET TIME ZONE 'UTC'")  # days and months of UTC
        self.mark = "%s" if self.engine == "postgresql" else "?"
        self.ids = dict(self.connection.execute("SELECT name, id FROM readings_meter").fetchall())
        self.written = epoch("2040-01-01")

    def close(self):
        self.connection.close()

    def bounds(self, start: str, end: str):
        if self.engine == "postgresql":
            return f"{start}T00:00:00Z", f"{end}T00:00:00Z"
        return f"{start} 00:00:00", f"{end} 00:00:00"

    def rows(self, meter: str, start: str, end: str):
        m = self.mark
        epoch_of = "EXTRACT(EPOCH FROM time)::bigint" if self.engine == "postgresql" else "unixepoch(time)"
        return np.array(self.connection.execute(
            f"SELECT {epoch_of}, value FROM readings_reading WHERE meter_id = {m} AND time >= {m} AND time < {m} "
            "ORDER BY time", [self.ids[meter], *self.bounds(start, end)]).fetchall(), dtype=np.float64)

    def buckets(self, meter: str, start: str, end: str, width: str):
        m = self.mark
        if self.engine == "postgresql":
            bucket = f"date_trunc('{width}', time)"
        else:
            bucket = "substr(time, 1, 10)" if width == "day" else "substr(time, 1, 7)"
        return self.connection.execute(
            f"SELECT {bucket} AS b, count(*), sum(value), min(value), max(value) FROM readings_reading "
            f"WHERE meter_id = {m} AND time >= {m} AND time < {m} GROUP BY b ORDER BY b",
            [self.ids[meter], *self.bounds(start, end)]).fetchall()

    def empty(self):
        self.connection.execute("SELECT 1").fetchall()

    def write(self, meter: str):
        self.written += 900
        m = self.mark
        when = (datetime.fromtimestamp(self.written, timezone.utc) if self.engine == "postgresql"
                else time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(self.written)))
        self.connection.execute(
            f"INSERT INTO readings_reading (meter_id, time, value) VALUES ({m}, {m}, {m}) "
            "ON CONFLICT (meter_id, time) DO UPDATE SET value = excluded.value", [self.ids[meter], when, 1.5])


class InfluxDirect:
    """The same InfluxQL the `influxdb` source's questions come down to, over one kept-alive session."""

    def __init__(self, url: str, database: str):
        import requests

        self.url, self.database = url, database
        self.session = requests.Session()
        self.written = epoch("2040-01-01")

    def close(self):
        self.session.close()

    def query(self, statement: str):
        import orjson

        response = self.session.get(f"{self.url}/query", params={"db": self.database, "q": statement, "epoch": "s"})
        response.raise_for_status()
        series = orjson.loads(response.content)["results"][0].get("series", [])
        return series[0]["values"] if series else []

    def where(self, meter: str, start: str, end: str) -> str:
        return f"FROM \"meter_usage\" WHERE meter = '{meter}' AND time >= {epoch(start)}s AND time < {epoch(end)}s"

    def rows(self, meter: str, start: str, end: str):
        return np.array(self.query(f"SELECT value {self.where(meter, start, end)} ORDER BY time ASC"), dtype=np.float64)

    def buckets(self, meter: str, start: str, end: str, width: str):
        days = self.query(f"SELECT count(value), sum(value), min(value), max(value) {self.where(meter, start, end)} "
                          "GROUP BY time(1d) fill(none)")
        if width == "day":
            return days
        months = {}  # InfluxQL has no months: days added up into them, as the source does
        for stamp, count, total, low, high in days:
            key = time.strftime("%Y-%m", time.gmtime(stamp))
            c, t, lo, hi = months.get(key, (0, 0.0, low, high))
            months[key] = (c + count, t + total, min(lo, low), max(hi, high))
        return months

    def empty(self):
        self.session.get(f"{self.url}/ping").raise_for_status()

    def write(self, meter: str):
        self.written += 900
        self.session.post(f"{self.url}/write", params={"db": self.database, "precision": "s"},
                          data=f"meter_usage,meter={meter} value=1.5 {self.written}").raise_for_status()


class CsvDirect:
    """The file read with pyarrow and answered with numpy, as one would without the project."""

    def __init__(self, folder: Path):
        self.folder = folder

    def close(self):
        pass

    def read(self, meter: str):
        import pyarrow.csv as pa_csv

        table = pa_csv.read_csv(self.folder / f"{meter}.csv",
                                convert_options=pa_csv.ConvertOptions(column_types={"time": "timestamp[s]"}))
        return (table.column("time").to_numpy().astype("datetime64[s]").astype(np.int64),
                table.column("meterusage").to_numpy())

    def rows(self, meter: str, start: str, end: str):
        times, values = self.read(meter)
        low, high = np.searchsorted(times, [epoch(start), epoch(end)])
        return np.column_stack([times[low:high], values[low:high]])

    def buckets(self, meter: str, start: str, end: str, width: str):
        times, values = self.read(meter)
        low, high = np.searchsorted(times, [epoch(start), epoch(end)])
        times, values = times[low:high], values[low:high]
        unit = "D" if width == "day" else "M"
        keys = times.astype("datetime64[s]").astype(f"datetime64[{unit}]")
        edges = np.flatnonzero(np.r_[True, keys[1:] != keys[:-1]])
        return list(zip(keys[edges], np.diff(np.r_[edges, len(keys)]), np.add.reduceat(values, edges),
                        np.minimum.reduceat(values, edges), np.maximum.reduceat(values, edges)))

    write = None

    def empty(self):
        pass


# ---- Measuring ----------------------------------------------------------------------------------


def measure(store: Store, rounds: int, load_seconds: float, meters: list[str]) -> dict:
    """Median milliseconds of each figure through gRPC and straight to the store, interleaved."""
    import grpc

    from grpc_api.gen.meterusage.v1 import meter_usage_pb2 as pb
    from grpc_api.gen.meterusage.v1 import meter_usage_pb2_grpc

    server, port = start_server([sys.executable, "manage.py", "grpcrunserver", "127.0.0.1:0"], store.env)
    direct = store.direct()
    results = {}
    try:
        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
            stub = meter_usage_pb2_grpc.MeterUsageServiceStub(channel)
            calls = {}
            for figure, (start, end, window) in WINDOWS.items():
                span = dict(meter=LONG, start_time=ts(f"{start}T00:00:00Z"), end_time=ts(f"{end}T00:00:00Z"))
                if window is None:
                    request = pb.ListReadingsRequest(**span, page_size=10_000)
                    project = (lambda r: lambda: stub.ListReadings(r, metadata=WRITER))(request)
                    straight = (lambda s, e: lambda: direct.rows(LONG, s, e))(start, end)
                    answer = len(project().readings), len(straight())
                else:
                    request = pb.AggregateReadingsRequest(**span, window=getattr(pb, window), time_zone="UTC")
                    project = (lambda r: lambda: stub.AggregateReadings(r, metadata=WRITER))(request)
                    width = "day" if window == "WINDOW_DAY" else "month"
                    straight = (lambda s, e, w: lambda: direct.buckets(LONG, s, e, w))(start, end, width)
                    answer = len(project().buckets), len(straight())
                if answer[0] != answer[1]:
                    raise RuntimeError(f"{store.kind}, {figure}: the project answered {answer[0]}, the store {answer[1]}")
                calls[figure] = (project, straight, answer[0])
            from grpc_health.v1 import health_pb2, health_pb2_grpc

            health, check = health_pb2_grpc.HealthStub(channel), health_pb2.HealthCheckRequest()
            calls[EMPTY] = (lambda: health.Check(check), direct.empty, 0)
            if direct.write is not None:
                written = [epoch("2030-01-01")]

                def write_one():
                    written[0] += 900
                    stamp = pb.ReadingInput(meter=LONG, value=1.5)
                    stamp.time.seconds = written[0]
                    stub.WriteReadings(pb.WriteReadingsRequest(readings=[stamp]), metadata=WRITER)

                calls["a live write (one reading)"] = (write_one, lambda: direct.write(LONG), 1)
            samples = {figure: ([], []) for figure in calls}
            for project, straight, _ in calls.values():
                for _ in range(3):
                    project(), straight()
            for _ in range(rounds):
                for figure, (project, straight, _) in calls.items():
                    for call, kept in ((project, samples[figure][0]), (straight, samples[figure][1])):
                        began = time.perf_counter()
                        call()
                        kept.append((time.perf_counter() - began) * 1000)
            for figure, (project_ms, straight_ms) in samples.items():
                results[figure] = {"project": statistics.median(project_ms), "straight": statistics.median(straight_ms),
                                   "size": calls[figure][2]}
        results[f"{CLIENTS} clients, a month of readings each"] = concurrent(store, port, meters, load_seconds)
    finally:
        direct.close()
        server.terminate()
        server.wait(timeout=30)
    return results


def concurrent(store: Store, port: int, meters: list[str], seconds: float) -> dict:
    """p50 / p99 of a month of readings with CLIENTS clients at once, each with a meter of its own
    (its own channel, or its own connection to the store), phases alternating."""
    import grpc

    from grpc_api.gen.meterusage.v1 import meter_usage_pb2 as pb
    from grpc_api.gen.meterusage.v1 import meter_usage_pb2_grpc

    start, end, _ = WINDOWS["month of readings"]
    samples = {"project": [], "straight": []}

    def client(meter: str, side: str, deadline: float, kept: list):
        if side == "project":
            channel = grpc.insecure_channel(f"127.0.0.1:{port}")
            stub = meter_usage_pb2_grpc.MeterUsageServiceStub(channel)
            request = pb.ListReadingsRequest(meter=meter, start_time=ts(f"{start}T00:00:00Z"),
                                             end_time=ts(f"{end}T00:00:00Z"), page_size=10_000)
            call, close = (lambda: stub.ListReadings(request, metadata=WRITER)), channel.close
        else:
            direct = store.direct()
            call, close = (lambda: direct.rows(meter, start, end)), direct.close
        try:
            call()
            while time.monotonic() < deadline:
                began = time.perf_counter()
                call()
                kept.append((time.perf_counter() - began) * 1000)
        finally:
            close()

    for _ in range(2):
        for side in ("project", "straight"):
            kept: list[float] = []
            deadline = time.monotonic() + seconds
            threads = [threading.Thread(target=client, args=(meters[i % len(meters)], side, deadline, kept))
                       for i in range(CLIENTS)]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
            samples[side] += kept
    return {"project": percentile(samples["project"], 0.5), "project_p99": percentile(samples["project"], 0.99),
            "straight": percentile(samples["straight"], 0.5), "straight_p99": percentile(samples["straight"], 0.99),
            "size": len(samples["project"]), "project_per_second": len(samples["project"]) / (2 * seconds),
            "straight_per_second": len(samples["straight"]) / (2 * seconds)}


def bench_store(kind: str, args, files: list[Path], rows: int) -> list[dict]:
    """The figures of one store (two for TimescaleDB with hypertables: as imported, compressed)."""
    work = Path(tempfile.mkdtemp(prefix=f"stores-bench-{kind}-", dir=args.cache_dir))
    store = Store(kind, args, work)
    meters = [path.stem for path in files if path.stem != LONG][:CLIENTS]
    reports = []
    try:
        began = time.perf_counter()
        store.start()
        started = time.perf_counter() - began
        seconds = store.load(files)
        notes = [f"started and migrated in {started:.1f} s"]
        if shape := store.shape():
            notes.append(shape)
        if settled := store.settle():
            notes.append(settled)
        held = store.readings()
        if held < rows:
            raise RuntimeError(f"{kind} holds {held:,} readings of {rows:,}")
        if rollups := store.rollup_size():
            notes.append(f"rollups {rollups / held:.1f} B/reading more")
        if store.engine == "postgresql" or kind == "sqlite":  # the change log that WatchReadings serves
            notes.append(f"change log {store.table_bytes('readings_readingchange') / held:.1f} B/reading more")
        report = {"store": kind, "readings": held, "import": rows / seconds if seconds == seconds else None,
                  "bytes": store.size() / held, "notes": notes}
        speed = f"{report['import']:,.0f} readings/s" if report["import"] else "no import"
        print(f"{kind}: {held:,} readings, {speed}, {report['bytes']:.1f} B/reading; " + "; ".join(notes), flush=True)
        report["figures"] = measure(store, args.rounds, args.load_seconds, meters)
        reports.append(report)
        print(json.dumps(report["figures"]), flush=True)
        if kind == "timescaledb" and store.is_hypertable():
            compressing = store.compress()
            compressed = {"store": "timescaledb-compressed", "readings": held, "import": None,
                          "bytes": store.size() / held,
                          "notes": [f"every chunk compressed in {compressing:.1f} s after the import "
                                    f"({held / compressing:,.0f} readings/s)",
                                    f"rollups {store.rollup_size() / held:.1f} B/reading more"]}
            print(f"timescaledb-compressed: {compressed['bytes']:.1f} B/reading", flush=True)
            compressed["figures"] = measure(store, args.rounds, args.load_seconds, meters)
            reports.append(compressed)
        if kind != "csv":
            reports[0]["import new"] = import_new(store, files, args.import_rounds)
            print(json.dumps(reports[0]["import new"]), flush=True)
    finally:
        store.stop()
        shutil.rmtree(work, ignore_errors=True)
    return reports


def import_new(store: Store, files: list[Path], rounds: int) -> dict:
    """Readings/s of the ten-year meter's file imported again as a new meter, by the project and
    straight by the store, alternating, after the other figures (the store grows by their rows)."""
    path = next(path for path in files if path.stem == LONG)
    rows = count_rows([path])
    rates = {"project": [], "straight": []}
    for number in range(rounds):
        rates["project"].append(rows / store.import_new(path, f"new-import-{number}"))
        rates["straight"].append(rows / store.load_straight(path, f"new-straight-{number}"))
    return {"readings": rows, **{side: statistics.median(values) for side, values in rates.items()}}


# ---- Report -----------------------------------------------------------------------------------


def verdicts(reports: list[dict]) -> list[str]:
    by = {report["store"]: report for report in reports}
    lines = []

    def line(goal: str, measured: str, ratio: float, limit: float, within: bool, cause: str = ""):
        verdict = "pass" if within else "MISS" + (f" ({cause})" if cause else "")
        lines.append(f"| {goal} | {measured} | {ratio:.2f} | {verdict} |")

    plain = by.get("postgresql")
    if plain and "timescaledb" in by:
        packed = by.get("timescaledb-compressed")
        if packed:
            ratio = packed["bytes"] / plain["bytes"]
            line("TimescaleDB compressed bytes/reading <= 1/5 of PostgreSQL's",
                 f"{packed['bytes']:.1f} vs {plain['bytes']:.1f} B", ratio, GOAL_COMPRESSED, ratio <= GOAL_COMPRESSED)
        else:
            lines.append("| TimescaleDB compressed bytes/reading <= 1/5 of PostgreSQL's | no hypertable to compress | "
                         "| MISS (no migration made the readings a hypertable) |")
    for name in ("postgresql", "timescaledb", "timescaledb-compressed"):
        if name not in by:
            continue
        figures = by[name]["figures"]
        month, floor = figures["month of days"], figures[EMPTY]["project"]
        for figure, goal in (("ten years of months", GOAL_DECADE), ("year of days", GOAL_YEAR)):
            cost = figures[figure]
            line(f"{name}: {figure} <= {goal:g}x a month of days (AggregateReadings)",
                 f"{cost['project']:.2f} vs {month['project']:.2f} ms", cost["project"] / month["project"], goal,
                 cost["project"] / month["project"] <= goal,
                 f"beyond an empty call ({floor:.2f} ms), {cost['project'] - floor:.2f} ms against "
                 f"{month['project'] - floor:.2f} ms; straight from the raw readings {cost['straight'] / month['straight']:.1f}x")
    if plain and "citus" in by:
        citus = by["citus"]
        for figure in ("month of readings", "month of days"):
            ours, theirs = citus["figures"][figure], plain["figures"][figure]
            ratio = ours["project"] / theirs["project"]
            line(f"Citus one-meter {figure} <= {GOAL_CITUS_MONTH:g}x PostgreSQL's",
                 f"{ours['project']:.2f} vs {theirs['project']:.2f} ms", ratio, GOAL_CITUS_MONTH, ratio <= GOAL_CITUS_MONTH,
                 f"the same query straight to each: {ours['straight']:.2f} vs {theirs['straight']:.2f} ms "
                 f"({ours['straight'] / theirs['straight']:.2f}x); empty calls {citus['figures'][EMPTY]['project']:.2f} vs "
                 f"{plain['figures'][EMPTY]['project']:.2f} ms")
        ratio = citus["import"] / plain["import"]
        line(f"Citus import >= {GOAL_CITUS_IMPORT:g}x PostgreSQL's", f"{citus['import']:,.0f} vs {plain['import']:,.0f} readings/s",
             ratio, GOAL_CITUS_IMPORT, ratio >= GOAL_CITUS_IMPORT,
             "three servers on the same cores: the coordinator's COPY routing to the shards, each worker's writes")
    return lines


def report(reports: list[dict], args, rows: int) -> None:
    print(f"\nStores benchmark: {rows:,} readings ({args.meters} meters of two years and `{LONG}`, ten years, "
          f"a reading every {args.step} minutes); medians of {args.rounds} interleaved rounds; milliseconds.")
    for item in reports:
        print(f"- {item['store']}: " + "; ".join(item["notes"]))
    print("\n| store | import readings/s | bytes/reading | " + " | ".join(WINDOWS) +
          f" | a live write | {CLIENTS} clients p50 / p99 | {EMPTY} |")
    print("| --- " * (6 + len(WINDOWS)) + "|")
    for item in reports:
        f = item["figures"]
        cells = [f"{f[figure]['project']:.2f}" for figure in WINDOWS]
        write = f.get("a live write (one reading)")
        load = f[f"{CLIENTS} clients, a month of readings each"]
        speed = f"{item['import']:,.0f}" if item["import"] else "n/a"
        written = f"{write['project']:.2f}" if write else "n/a"
        print(f"| {item['store']} | {speed} | {item['bytes']:.1f} | " + " | ".join(cells) +
              f" | {written} | {load['project']:.1f} / {load['project_p99']:.1f} | {f[EMPTY]['project']:.2f} |")
    print("\nEach figure through the project (gRPC) beside the same question straight to the store:")
    print("| store | figure | project | straight to the store | ratio |\n| --- | --- | --- | --- | --- |")
    for item in reports:
        for figure, values in item["figures"].items():
            if "project_p99" in values:
                print(f"| {item['store']} | {figure}: p50 / p99, calls/s | {values['project']:.2f} / {values['project_p99']:.2f}, "
                      f"{values['project_per_second']:.0f}/s | {values['straight']:.2f} / {values['straight_p99']:.2f}, "
                      f"{values['straight_per_second']:.0f}/s | {values['project'] / values['straight']:.2f}x |")
            else:
                label = f"{figure} ({values['size']:,})" if values["size"] else figure
                ratio = f"{values['project'] / values['straight']:.2f}x" if values["straight"] >= 0.01 else "n/a"
                print(f"| {item['store']} | {label} | {values['project']:.2f} | {values['straight']:.2f} | {ratio} |")
    print("\nA new meter's file (the ten-year meter's rows again), readings/s, the project's import (a process, "
          "its start included) beside the store's own bulk load of the same rows, prepared beforehand:")
    print("| store | project | straight to the store | ratio |\n| --- | --- | --- | --- |")
    for item in reports:
        if "import new" in item:
            new = item["import new"]
            print(f"| {item['store']} | {new['project']:,.0f} | {new['straight']:,.0f} "
                  f"({STRAIGHT_LOAD.get(item['store'], 'COPY')}) | {new['project'] / new['straight']:.2f} |")
    print("\n| goal | measured | ratio | verdict |\n| --- | --- | --- | --- |")
    print("\n".join(verdicts(reports)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--meters", type=int, default=500, help="Meters of two years each (default 500).")
    parser.add_argument("--scale", type=float, default=1.0, help="Multiplies --meters (0.02: a run of minutes).")
    parser.add_argument("--step", type=int, default=30, choices=[15, 30, 60], help="Minutes between readings.")
    parser.add_argument("--stores", nargs="+", default=STORES, choices=STORES)
    parser.add_argument("--postgres-url", default=os.environ.get("TEST_POSTGRES_URL", "postgres://postgres@127.0.0.1:5432/postgres"))
    parser.add_argument("--cache-dir", type=Path, default=Path("/var/tmp/meterusage-bench"))
    parser.add_argument("--rounds", type=int, default=30, help="Interleaved rounds of the single calls.")
    parser.add_argument("--load-seconds", type=float, default=3.0, help="Each phase of the concurrent clients.")
    parser.add_argument("--import-rounds", type=int, default=2, help="Rounds of a new meter's import beside the store's own load.")
    parser.add_argument("--json", type=Path, help="Also write the figures here.")
    args = parser.parse_args()
    args.meters = max(2, round(args.meters * args.scale))
    args.cache_dir.mkdir(parents=True, exist_ok=True)
    args.data = args.cache_dir / f"stores-{args.meters}x730-{args.step}min"
    files = generate(args.data, args.meters, args.step)
    rows = count_rows(files)
    print(f"{rows:,} readings in {len(files)} files under {args.data}", flush=True)
    reports, failed = [], []
    for kind in args.stores:
        try:
            reports += bench_store(kind, args, files, rows)
        except Exception as error:  # one store's failure is reported; the others are still measured
            traceback.print_exc()
            failed.append(f"{kind}: {type(error).__name__}: {error}")
        if args.json:
            args.json.write_text(json.dumps({"reports": reports, "failed": failed}, indent=1, default=str))
    report(reports, args, rows)
    for line in failed:
        print(f"FAILED {line}")


if __name__ == "__main__":
    main()
