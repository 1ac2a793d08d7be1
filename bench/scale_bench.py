"""Scale benchmark: a large store, built with the project's own commands, and what it costs to
read from it and to import into it, on PostgreSQL and SQLite.

Builds once, and keeps under --cache-dir for later runs: `manage.py generate_readings` files of
--meters meters and `manage.py import_readings` of all of them into a PostgreSQL database and a
SQLite file (the time it took is printed). Then, interleaved round after round, medians:

1. One meter's month (2,976 readings): `ListReadings` and `AggregateReadings(day)` over gRPC
   (`manage.py grpcrunserver`, a client in this process), each beside the same query issued from
   Python straight to the store (psycopg / sqlite3): the SQL the `sql` source runs, rows into
   numpy. Goal: at most 2x.
2. Import of a new meter's file (--import-rows readings) into the filled store, as a user runs it
   (`manage.py import_readings`, a process), beside the same import into an empty store and
   beside loading the same rows straight into the same filled table as a user would
   (`psql -c "\\copy ..."`, `sqlite3 ... .import`), processes too. Goals: at least 0.5x each.
3. Peak RSS of `manage.py import_readings` of --memory-rows readings (10M) beside 1M, into an
   empty store of each kind: memory stays flat with the file's length.

    .venv/bin/python bench/scale_bench.py                          # 3M readings (about 10 minutes)
    .venv/bin/python bench/scale_bench.py --meters 500 --stores postgresql    # 35M readings
    .venv/bin/python bench/scale_bench.py --meters 143 --stores sqlite        # 10M readings
"""
import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import grpc
import numpy as np
from common import REPO, manage, start_server, ts  # puts the repository on sys.path
from stores import DAYS, MONTH, Store, build, direct_calls, generated

from grpc_api.gen.meterusage.v1 import meter_usage_pb2 as pb  # noqa: E402
from grpc_api.gen.meterusage.v1 import meter_usage_pb2_grpc  # noqa: E402

GOAL_LATENCY, GOAL_IMPORT = 2.0, 0.5


def run(command: list[str], env: dict, cwd: Path = REPO) -> float:
    """Seconds `command` took, as a process (raises if it failed)."""
    began = time.perf_counter()
    subprocess.run(command, cwd=cwd, env=env, check=True, capture_output=True)
    return time.perf_counter() - began


def peak_rss_mib(command: list[str], env: dict) -> float:
    result = subprocess.run(["/usr/bin/time", "-f", "%M", *command], cwd=REPO, env=env, check=True,
                            capture_output=True, text=True)
    return int(result.stderr.strip().splitlines()[-1]) / 1024


# ---- 1. One meter's month ---------------------------------------------------------------------


def month_latency(store: Store, meter: str, rounds: int, calls: int) -> list[str]:
    direct_rows, direct_buckets, connection = direct_calls(store, meter)
    server, port = start_server([sys.executable, "manage.py", "grpcrunserver", "127.0.0.1:0"], store.env)
    kinds = {"ListReadings": [], "direct rows": [], "AggregateReadings(day)": [], "direct GROUP BY": []}
    try:
        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
            stub = meter_usage_pb2_grpc.MeterUsageServiceStub(channel)
            span = dict(meter=meter, start_time=ts(MONTH[0]), end_time=ts(MONTH[1]))
            list_request = pb.ListReadingsRequest(**span, page_size=10_000)
            aggregate_request = pb.AggregateReadingsRequest(**span, window=pb.WINDOW_DAY, time_zone="UTC")
            count = len(stub.ListReadings(list_request).readings)
            calls_of = {
                "ListReadings": lambda: stub.ListReadings(list_request),
                "direct rows": direct_rows,
                "AggregateReadings(day)": lambda: stub.AggregateReadings(aggregate_request),
                "direct GROUP BY": direct_buckets,
            }
            for call in calls_of.values():
                for _ in range(10):
                    call()
            for _ in range(rounds):
                for name, call in calls_of.items():
                    for _ in range(calls):
                        began = time.perf_counter()
                        call()
                        kinds[name].append((time.perf_counter() - began) * 1000)
    finally:
        connection.close()
        server.terminate()
        server.wait(timeout=30)
    median = {name: statistics.median(samples) for name, samples in kinds.items()}
    lines = []
    for project, direct in (("ListReadings", "direct rows"), ("AggregateReadings(day)", "direct GROUP BY")):
        ratio = median[project] / median[direct]
        verdict = "pass" if ratio <= GOAL_LATENCY else "MISS"
        lines.append(f"| {store.kind} | {project}, one month ({count:,} readings) | {median[project]:.2f} ms | "
                     f"{median[direct]:.2f} ms ({direct}) | {ratio:.2f}x | <= {GOAL_LATENCY:g}x: {verdict} |")
    return lines


# ---- 2. Import into the filled store ----------------------------------------------------------


def copy_limit(store: Store, path: Path, meter: str) -> float:
    """Seconds to load the file's rows straight into the table as a user would: psql \\copy, or
    sqlite3's .import (the times already in the form the table holds)."""
    store.query("INSERT INTO readings_meter (name, description, unit, time_zone, interval, source, reading_count, "
                "data_version, changes_pruned_through, created_at, updated_at) "
                "VALUES (%s, '', 'kWh', 'UTC', %s, 'default', 0, 0, 0, %s, %s)",
                [meter, 900_000_000 if store.kind == "sqlite" else "15 minutes", "2019-01-01", "2019-01-01"])
    meter_id = store.query("SELECT id FROM readings_meter WHERE name = %s", [meter])[0][0]
    rows = path.with_suffix(".rows.csv")
    with path.open() as source, rows.open("w") as target:
        next(source)
        for line in source:
            stamp, value = line.rstrip("\n").split(",")
            if value and value != "NaN":
                target.write(f"{meter_id},{stamp}{'+00' if store.kind == 'postgresql' else ''},{value}\n")
    if store.kind == "postgresql":
        command = ["psql", store.url, "-q", "-c",
                   f"\\copy readings_reading (meter_id, time, value) FROM '{rows}' WITH (FORMAT csv)"]
    else:
        command = ["sh", "-c", f"sqlite3 {store.url.removeprefix('sqlite:///')} "
                   f"\"CREATE TEMP TABLE r (meter_id, time, value);\" \".mode csv\" \".import {rows} r\" "
                   f"\"INSERT INTO readings_reading (meter_id, time, value) SELECT meter_id, time, value FROM r;\""]
    return run(command, store.env)


def imports(kind: str, args, filled: Store, path: Path, rows: int) -> list[str]:
    speeds = {"filled": [], "empty": [], "limit": []}
    empty = Store(kind, args, "meterusage_scale_empty")
    for round_number in range(args.rounds):
        probe = f"probe-{round_number}"
        speeds["filled"].append(rows / run([sys.executable, "manage.py", "import_readings", str(path), "--meter", probe,
                                            "--verbosity", "0"], filled.env))
        filled.forget_meter(probe)
        empty.create()
        speeds["empty"].append(rows / run([sys.executable, "manage.py", "import_readings", str(path), "--meter", probe,
                                           "--verbosity", "0"], empty.env))
        empty.drop()
        speeds["limit"].append(rows / copy_limit(filled, path, f"copy-{round_number}"))
        filled.forget_meter(f"copy-{round_number}")
    median = {name: statistics.median(values) for name, values in speeds.items()}
    vs_empty, vs_limit = median["filled"] / median["empty"], median["filled"] / median["limit"]
    verdict = "pass" if vs_empty >= GOAL_IMPORT and vs_limit >= GOAL_IMPORT else "MISS"
    tool = "psql \\copy" if kind == "postgresql" else "sqlite3 .import"
    return [f"| {kind} | {median['filled']:,.0f} | {median['empty']:,.0f} | {median['limit']:,.0f} ({tool}) | "
            f"{vs_empty:.2f}x | {vs_limit:.2f}x | >= {GOAL_IMPORT:g}x both: {verdict} |"]


# ---- 3. Memory --------------------------------------------------------------------------------


def memory(kind: str, args, small: Path, large: Path, small_rows: int, large_rows: int) -> list[str]:
    empty = Store(kind, args, "meterusage_scale_memory")
    peaks = {}
    for path, rows in ((small, small_rows), (large, large_rows)):
        empty.create()
        peaks[rows] = peak_rss_mib([sys.executable, "manage.py", "import_readings", str(path), "--meter", "memory",
                                    "--verbosity", "0"], empty.env)
    empty.drop()
    check = peak_rss_mib([sys.executable, "manage.py", "check"], empty.env)
    flat = peaks[large_rows] <= peaks[small_rows] * 1.2
    return [f"| {kind} | {peaks[small_rows]:.0f} MiB | {peaks[large_rows]:.0f} MiB | {check:.0f} MiB | "
            f"{'pass' if flat else 'MISS'} (10x the rows, {peaks[large_rows] / peaks[small_rows]:.2f}x the memory) |"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--meters", type=int, default=43, help="Meters of two years each in the filled store (43: 3M readings).")
    parser.add_argument("--stores", nargs="+", default=["postgresql", "sqlite"], choices=["postgresql", "sqlite"])
    parser.add_argument("--postgres-url", default=os.environ.get("TEST_POSTGRES_URL", "postgres://postgres@127.0.0.1:5432/postgres"))
    parser.add_argument("--cache-dir", type=Path, default=Path("/var/tmp/meterusage-bench"))
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--calls", type=int, default=50, help="Calls of each kind per round (latency).")
    parser.add_argument("--import-rows", type=int, default=1_000_000)
    parser.add_argument("--memory-rows", type=int, default=10_000_000, help="0: no memory run.")
    parser.add_argument("--parts", nargs="+", default=["latency", "import", "memory"], choices=["latency", "import", "memory"])
    args = parser.parse_args()
    args.cache_dir.mkdir(parents=True, exist_ok=True)

    files = generated(args, f"fill-{args.meters}x{DAYS}", meters=args.meters, days=DAYS, start="2019-01-01", seed=1)
    new_meter = generated(args, f"new-{args.import_rows}", meters=1, days=-(-args.import_rows // 96),
                          start="1990-01-01", seed=2)[0]
    new_rows = sum(1 for _ in new_meter.open()) - 1
    latency_lines, import_lines, memory_lines, built = [], [], [], []
    for kind in args.stores:
        filled = Store(kind, args, f"meterusage_scale_{args.meters}x{DAYS}")
        made = build(filled, files)
        built.append(f"{kind}: {made['readings']:,} readings in {made['seconds']:.0f} s "
                     f"({made['readings'] / made['seconds']:,.0f} readings/s) with `manage.py import_readings`")
        print(built[-1], flush=True)
        if "latency" in args.parts:
            latency_lines += month_latency(filled, "m-001", args.rounds, args.calls)
            print("\n".join(latency_lines[-2:]), flush=True)
        if "import" in args.parts:
            import_lines += imports(kind, args, filled, new_meter, new_rows)
            print(import_lines[-1], flush=True)
        if args.memory_rows and "memory" in args.parts:
            large = generated(args, f"memory-{args.memory_rows}", meters=1, days=-(-args.memory_rows // 96),
                              start="1700-01-01", seed=3)[0]
            large_rows = sum(1 for _ in large.open()) - 1
            memory_lines += memory(kind, args, new_meter, large, new_rows, large_rows)
            print(memory_lines[-1], flush=True)

    print("\nScale benchmark: medians of", args.rounds, "rounds, interleaved.")
    print("\n".join(f"- {line}" for line in built))
    print("\n| store | call | gRPC | straight to the store | ratio | goal |\n| --- | --- | --- | --- | --- | --- |")
    print("\n".join(latency_lines))
    print(f"\nImport of a new meter ({new_rows:,} readings), rows/s, each a process as a user runs it:")
    print("| store | into the filled store | into an empty store | straight into the filled table | vs empty | vs straight | goal |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    print("\n".join(import_lines))
    if memory_lines:
        print("\nPeak RSS of `manage.py import_readings`, into an empty store:")
        print(f"| store | {new_rows:,} readings | {args.memory_rows:,} readings | `manage.py check` | flat |")
        print("| --- | --- | --- | --- | --- |")
        print("\n".join(memory_lines))


if __name__ == "__main__":
    main()
