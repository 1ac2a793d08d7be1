"""Throughput of the CSV import into SQLite and PostgreSQL, against row-by-row saves and bulk loads.

For each store, the median of --repeats runs of:

- import (new rows): `readings_import` of the whole file into an empty meter;
- re-import (unchanged): the same file again into the now full meter;
- baseline: `Reading(...).save()` row by row, in one transaction, for a 10,000-row sample;
- limit: the same cleaned rows loaded straight into the readings table, with `psql \\copy` on
  PostgreSQL and one sqlite3 `executemany` on SQLite;

then the peak RSS of `manage.py import_readings FILE` beside that of `manage.py check`.

Run from the repository root:

    .venv/bin/python bench/import_bench.py [--rows 1000000] [--repeats 3] [--memory-rows 0]
        [--postgres-url postgres://postgres@127.0.0.1:5432/postgres]

Each store runs in its own subprocess with its own DATABASE_URL: SQLite in a temporary file, and
PostgreSQL in a database `meterusage_bench` that the bench creates and drops. Without a reachable
PostgreSQL only SQLite is measured. `--memory-rows 10000000` also imports a file of that many rows
into SQLite, to compare its peak RSS with that of the --rows file.
"""
import argparse
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path
from urllib.parse import urlsplit

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pa_csv

from common import REPO as REPO_ROOT  # puts the repository on sys.path

from readings.csvfile import CsvReport, read_readings  # noqa: E402
from readings.generate import synthetic_readings, write_readings_csv  # noqa: E402

BENCH_DATABASE = "meterusage_bench"
DEFAULT_POSTGRES_URL = "postgres://postgres@127.0.0.1:5432/postgres"
BENCH_METER = "bench"
BASELINE_ROWS = 10_000
SLOTS_PER_DAY = 96
GOAL_RATIO = 0.5
# Linux carries a parent's peak RSS into a child it spawns (vfork, then exec), so a large bench
# process would inflate the child's ru_maxrss: a small probe process runs the command instead.
RSS_PROBE = (
    "import resource, subprocess, sys; "
    "code = subprocess.call(sys.argv[1:], stdout=sys.stderr); "
    "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss); "
    "sys.exit(code)"
)

IMPORT = "import (new rows)"
REIMPORT = "re-import (unchanged)"
BASELINE = "baseline: save() per row"
LIMIT = {"sqlite": "limit: executemany", "postgresql": "limit: psql \\copy"}


class BenchError(Exception):
    """A step of the bench that failed; the message says which and why."""


@dataclass(frozen=True)
class Store:
    name: str  # "sqlite" or "postgresql"
    url: str

    def env(self) -> dict:
        return {
            **os.environ,
            "DATABASE_URL": self.url,
            "DJANGO_SETTINGS_MODULE": "meterproject.settings",
            "DJANGO_DEBUG": "0",
        }


# The bench: data, stores, subprocesses, table.


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000, help="Rows in the benchmark file.")
    parser.add_argument("--repeats", type=int, default=3, help="Runs per measurement; the median is shown.")
    parser.add_argument(
        "--memory-rows",
        type=int,
        default=0,
        help="Also report the peak RSS of importing a file of this many rows (SQLite only).",
    )
    parser.add_argument(
        "--postgres-url", default=DEFAULT_POSTGRES_URL, help="Server to create the bench database on."
    )
    args = parser.parse_args(argv)
    if args.rows < 1 or args.repeats < 1 or args.memory_rows < 0:
        parser.error("--rows and --repeats must be at least 1, --memory-rows at least 0")
    return args


def bench(args: argparse.Namespace) -> None:
    with tempfile.TemporaryDirectory(prefix="import-bench-") as tmp:
        workdir = Path(tmp)
        csv_path = workdir / f"readings-{args.rows}.csv"
        clean_path = workdir / "clean.npz"
        rows = write_bench_csv(csv_path, rows=args.rows)
        write_clean_rows(csv_path, clean_path)
        stores = [Store("sqlite", f"sqlite:///{workdir / 'bench.sqlite3'}")]
        unreachable = postgres_unreachable(args.postgres_url)
        if unreachable:
            print(f"PostgreSQL at {args.postgres_url} is unreachable ({unreachable}); benching SQLite only.")
        else:
            stores.append(Store("postgresql", database_url(args.postgres_url, BENCH_DATABASE)))
        results, memory = [], []
        try:
            if not unreachable:
                create_database(args.postgres_url, BENCH_DATABASE)
            for store in stores:
                results += run_store(store, csv_path, clean_path, workdir, args.repeats)
                memory.append(measure_memory(store, csv_path, rows, workdir))
            if args.memory_rows:
                big_path = workdir / f"readings-{args.memory_rows}.csv"
                big_rows = write_bench_csv(big_path, rows=args.memory_rows)
                memory.append(measure_memory(stores[0], big_path, big_rows, workdir, with_check=False))
                big_path.unlink()
        finally:
            if not unreachable:
                drop_database(args.postgres_url, BENCH_DATABASE)
    print()
    print(format_table(results))
    print()
    print(goal_line(results, postgres_ran=not unreachable))
    for line in memory_lines(memory):
        print(line)


def progress(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def write_bench_csv(path: Path, *, rows: int) -> int:
    """Write one synthetic meter of about `rows` readings to `path`; returns the rows written."""
    days = max(1, round(rows / SLOTS_PER_DAY))
    times, values = synthetic_readings(days=days, start=date(2019, 1, 1), seed=1)
    write_readings_csv(path, times, values)
    progress(f"wrote {len(times):,} rows to {path.name} ({path.stat().st_size / 2**20:.0f} MiB)")
    return len(times)


def write_clean_rows(csv_path: Path, out: Path) -> None:
    """Save the file's rows as the import cleans them (UTC epochs, values), for the other methods."""
    batches = list(read_readings(csv_path, report=CsvReport()))
    epochs = np.concatenate([batch.epochs for batch in batches])
    values = np.concatenate([batch.values for batch in batches])
    np.savez(out, epochs=epochs, values=values)


def postgres_unreachable(url: str) -> str | None:
    """None when a connection to `url` succeeds, else the reason it did not."""
    import psycopg

    try:
        psycopg.connect(url, connect_timeout=5).close()
    except psycopg.Error as exc:
        return str(exc).strip().splitlines()[0]
    return None


def database_url(server_url: str, name: str) -> str:
    return urlsplit(server_url)._replace(path=f"/{name}").geturl()


def create_database(server_url: str, name: str) -> None:
    drop_database(server_url, name)
    _run_maintenance(server_url, f'CREATE DATABASE "{name}"')


def drop_database(server_url: str, name: str) -> None:
    _run_maintenance(server_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _run_maintenance(server_url: str, sql: str) -> None:
    import psycopg

    with psycopg.connect(server_url, autocommit=True) as conn:
        conn.execute(sql)


def run_store(store: Store, csv_path: Path, clean_path: Path, workdir: Path, repeats: int) -> list[dict]:
    """Run the timed measurements of one store in a subprocess; returns its result rows."""
    result_path = workdir / f"{store.name}-results.json"
    args = [
        sys.executable, __file__, "worker",
        "--store", store.name,
        "--csv", str(csv_path),
        "--clean", str(clean_path),
        "--workdir", str(workdir),
        "--repeats", str(repeats),
        "--result", str(result_path),
    ]
    completed = subprocess.run(args, env=store.env(), cwd=REPO_ROOT)
    if completed.returncode:
        raise BenchError(f"the {store.name} run failed (exit status {completed.returncode})")
    return json.loads(result_path.read_text())


def measure_memory(
    store: Store, csv_path: Path, rows: int, workdir: Path, *, with_check: bool = True
) -> dict:
    """Peak RSS in MiB of `manage.py import_readings` into a new meter, and of `manage.py check`."""
    manage = [sys.executable, str(REPO_ROOT / "manage.py")]
    meter = f"memory-{store.name}-{rows}"
    progress(f"{store.name}: measuring peak RSS of import_readings with {rows:,} rows")
    result = {
        "store": store.name,
        "rows": rows,
        "import": peak_rss_mib([*manage, "import_readings", str(csv_path), "--meter", meter], store, workdir),
    }
    if with_check:
        result["check"] = peak_rss_mib([*manage, "check"], store, workdir)
    return result


def peak_rss_mib(args: list[str], store: Store, workdir: Path) -> float:
    """Run `args` to the end under RSS_PROBE and return the peak RSS of `args` alone."""
    log_path = workdir / "subprocess.log"
    with log_path.open("wb") as log:
        probe = subprocess.run(
            [sys.executable, "-c", RSS_PROBE, *args],
            env=store.env(),
            cwd=REPO_ROOT,
            stdout=subprocess.PIPE,
            stderr=log,
        )
    if probe.returncode:
        output = log_path.read_text(errors="replace")[-2000:]
        raise BenchError(f"{' '.join(args[1:])} failed (exit status {probe.returncode}):\n{output}")
    return int(probe.stdout) / 1024  # KiB on Linux


def format_table(results: list[dict]) -> str:
    limits = {r["store"]: rows_per_second(r) for r in results if r["method"] == LIMIT[r["store"]]}
    header = ["store", "method", "rows", "median s", "rows/s", "vs limit"]
    lines = []
    for r in results:
        limit = limits.get(r["store"])
        ratio = f"{rows_per_second(r) / limit:.2f}x" if limit else "-"
        median = statistics.median(r["seconds"])
        speed = f"{rows_per_second(r):,.0f}"
        lines.append([r["store"], r["method"], f"{r['rows']:,}", f"{median:.3f}", speed, ratio])
    widths = [max(len(row[i]) for row in [header, *lines]) for i in range(len(header))]
    left_aligned = {0, 1}

    def render(row: list[str]) -> str:
        cells = [
            cell.ljust(width) if i in left_aligned else cell.rjust(width)
            for i, (cell, width) in enumerate(zip(row, widths))
        ]
        return " | ".join(cells)

    rule = "-+-".join("-" * w for w in widths)
    return "\n".join([render(header), rule, *(render(row) for row in lines)])


def rows_per_second(result: dict) -> float:
    return result["rows"] / statistics.median(result["seconds"])


def goal_line(results: list[dict], *, postgres_ran: bool) -> str:
    goal = f"goal: import rows/s >= {GOAL_RATIO} x COPY rows/s on PostgreSQL"
    by_method = {r["method"]: r for r in results if r["store"] == "postgresql"}
    if not postgres_ran:
        return f"{goal}: not measured (PostgreSQL unreachable)"
    if LIMIT["postgresql"] not in by_method:
        return f"{goal}: not measured (psql not found)"
    ratio = rows_per_second(by_method[IMPORT]) / rows_per_second(by_method[LIMIT["postgresql"]])
    verdict = "PASS" if ratio >= GOAL_RATIO else "MISS"
    return f"{goal}: {verdict} (ratio {ratio:.2f})"


def memory_lines(memory: list[dict]) -> list[str]:
    checks = {m["store"]: m["check"] for m in memory if "check" in m}
    lines = []
    for m in memory:
        check = checks[m["store"]]
        line = f"peak RSS {m['store']}: import_readings of {m['rows']:,} rows {m['import']:.0f} MiB"
        lines.append(f"{line}, {m['import'] - check:+.0f} MiB over manage.py check ({check:.0f} MiB)")
    return lines


# The worker: one store, inside Django, with DATABASE_URL set by the bench.


def worker(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(prog="import_bench.py worker")
    for name in ("--store", "--csv", "--clean", "--workdir", "--result"):
        parser.add_argument(name, required=True)
    parser.add_argument("--repeats", type=int, required=True)
    args = parser.parse_args(argv)

    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)
    clean = np.load(args.clean)
    epochs, values = clean["epochs"], clean["values"]
    csv_path, workdir = Path(args.csv), Path(args.workdir)
    results = [
        time_import(csv_path, len(epochs), args.store, args.repeats),
        time_reimport(csv_path, len(epochs), args.store, args.repeats),
        time_baseline(epochs[:BASELINE_ROWS], values[:BASELINE_ROWS], args.store, args.repeats),
    ]
    if args.store == "sqlite":
        results.append(time_sqlite_limit(epochs, values, args.repeats))
    elif shutil.which("psql"):
        results.append(time_postgres_limit(epochs, values, workdir, args.repeats))
    else:
        progress("psql not found on PATH: no limit row for PostgreSQL")
    Path(args.result).write_text(json.dumps(results))


def repeat(store: str, method: str, rows: int, repeats: int, prepare, run) -> dict:
    """Call prepare() then time run() `repeats` times; returns the result row."""
    seconds = []
    for i in range(repeats):
        prepare()
        started = time.perf_counter()
        run()
        seconds.append(time.perf_counter() - started)
        progress(f"{store}: {method} {i + 1}/{repeats}: {seconds[-1]:.2f} s")
    return {"store": store, "method": method, "rows": rows, "seconds": seconds}


def time_import(csv_path: Path, rows: int, store: str, repeats: int) -> dict:
    from readings.models import Meter
    from readings.services import readings_import

    def drop_meter():
        Meter.objects.filter(name=BENCH_METER).delete()
        vacuum()

    def run():
        imported = readings_import(path=csv_path, meter_name=BENCH_METER)
        expect(imported.rows_inserted == rows, f"import inserted {imported.rows_inserted} of {rows} rows")

    return repeat(store, IMPORT, rows, repeats, drop_meter, run)


def time_reimport(csv_path: Path, rows: int, store: str, repeats: int) -> dict:
    from readings.services import readings_import

    def run():
        imported = readings_import(path=csv_path, meter_name=BENCH_METER)
        unchanged = imported.rows_unchanged
        expect(unchanged == rows, f"re-import left {unchanged} of {rows} rows unchanged")

    return repeat(store, REIMPORT, rows, repeats, lambda: None, run)


def time_baseline(epochs: np.ndarray, values: np.ndarray, store: str, repeats: int) -> dict:
    from django.db import transaction

    from readings.models import Reading

    rows = [(datetime.fromtimestamp(e, UTC), v) for e, v in zip(epochs.tolist(), values.tolist())]
    meter = empty_bench_meter()

    def run():
        with transaction.atomic():
            for moment, value in rows:
                Reading(meter=meter, time=moment, value=value).save()

    return repeat(store, BASELINE, len(rows), repeats, empty_bench_meter, run)


def time_sqlite_limit(epochs: np.ndarray, values: np.ndarray, repeats: int) -> dict:
    import sqlite3

    from django.db import connection

    from readings.models import Reading

    meter = empty_bench_meter()
    # Django keeps SQLite datetimes as naive UTC text, 'YYYY-MM-DD HH:MM:SS'.
    rows = list(zip([meter.pk] * len(epochs), utc_texts(epochs).to_pylist(), values.tolist()))
    table = Reading._meta.db_table
    path = connection.settings_dict["NAME"]

    def run():
        with sqlite3.connect(path) as db:
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=NORMAL")
            db.executemany(f"INSERT INTO {table} (meter_id, time, value) VALUES (?, ?, ?)", rows)
        db.close()

    def prepare():
        empty_bench_meter()
        connection.close()

    result = repeat("sqlite", LIMIT["sqlite"], len(rows), repeats, prepare, run)
    expect(Reading.objects.filter(meter=meter).count() == len(rows), "executemany did not load every row")
    return result


def time_postgres_limit(epochs: np.ndarray, values: np.ndarray, workdir: Path, repeats: int) -> dict:
    from django.db import connection

    from readings.models import Reading

    meter = empty_bench_meter()
    copy_path = workdir / "copy.csv"
    write_copy_csv(copy_path, meter.pk, epochs, values)
    table = Reading._meta.db_table
    command = [
        "psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", "-d", os.environ["DATABASE_URL"],
        "-c", f"\\copy {table}(meter_id,time,value) FROM '{copy_path}' (FORMAT csv)",
    ]

    def run():
        subprocess.run(command, check=True)

    def prepare():
        empty_bench_meter()
        connection.close()

    result = repeat("postgresql", LIMIT["postgresql"], len(epochs), repeats, prepare, run)
    expect(Reading.objects.filter(meter=meter).count() == len(epochs), "\\copy did not load every row")
    copy_path.unlink()
    return result


def utc_texts(epochs: np.ndarray) -> pa.Array:
    """Epoch seconds as 'YYYY-MM-DD HH:MM:SS' text in UTC."""
    return pa.array(epochs.astype("datetime64[s]"), pa.timestamp("s")).cast(pa.string())


def write_copy_csv(path: Path, meter_id: int, epochs: np.ndarray, values: np.ndarray) -> None:
    """A header-less CSV of meter_id, UTC time with '+00', value, as COPY reads it."""
    table = pa.table(
        {
            "meter_id": pa.array(np.full(len(epochs), meter_id, dtype=np.int64)),
            "time": pc.binary_join_element_wise(utc_texts(epochs), "+00", ""),
            "value": pa.array(values, pa.float64()),
        }
    )
    options = pa_csv.WriteOptions(include_header=False, quoting_style="none")
    pa_csv.write_csv(table, str(path), write_options=options)


def empty_bench_meter():
    """The bench meter, created if missing, with no readings and the table vacuumed."""
    from readings.models import Meter, Reading

    meter, _ = Meter.objects.get_or_create(name=BENCH_METER)
    Reading.objects.filter(meter=meter).delete()
    Meter.objects.filter(pk=meter.pk).update(reading_count=0, first_reading_at=None, last_reading_at=None)
    vacuum()
    return meter


def vacuum() -> None:
    """Reclaim deleted rows so that every run starts from the same table state."""
    from django.db import connection

    from readings.models import Reading

    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute(f"VACUUM ANALYZE {Reading._meta.db_table}")
        else:
            cursor.execute("VACUUM")


def expect(condition: bool, message: str) -> None:
    if not condition:
        raise BenchError(message)


def main(argv: list[str]) -> int:
    # A terminated bench still drops its database and temporary files.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(128 + signal.SIGTERM))
    try:
        if argv[:1] == ["worker"]:
            worker(argv[1:])
        else:
            bench(parse_args(argv))
    except BenchError as exc:
        print(f"import_bench: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
