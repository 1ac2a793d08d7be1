"""Watch burst benchmark: 1,000 WatchReadings opened at once, and what everyone else sees meanwhile.

On PostgreSQL (a database it creates at --postgres-url; the production store, where the server
LISTENs) or SQLite (--sqlite), with `manage.py grpcrunserver` and the gateway (gunicorn) each in a
process of its own, as a user runs them. Twenty meters hold the reference month each (their
change log too); before every round 50 readings are written to each meter after the resume tokens
the round's watches start from, so that those watches have something to catch up.

Each round, first with nothing else going on (the baseline) and then during a burst:
- a burst process opens --watches WatchReadings at once on one channel, half from now and half
  from a resume token (50 changes behind), and times each one's first message;
- this process, while the burst opens (and with nothing going on, for the baseline), times a
  `catch_up_only` watch from a token (50 changes to catch up, then the end) and a GET of the
  gateway's changes feed (`/api/v1/meters/NAME/changes/?after=TOKEN`), one after the other.

Goal: during the burst every first message and every catch-up within 1 s (p99); the changes feed
never answers 504 (nor anything but 200). Run from the repository root:

    .venv/bin/python bench/watch_bench.py               # PostgreSQL, 3 rounds of 1,000 watches
    .venv/bin/python bench/watch_bench.py --sqlite
"""
import argparse
import http.client
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from urllib.parse import quote

import grpc

from common import REPO, manage, start_server, ts  # puts the repository on sys.path
from gateway_bench import start_gunicorn

from grpc_api.gen.meterusage.v1 import meter_usage_pb2 as pb  # noqa: E402
from grpc_api.gen.meterusage.v1 import meter_usage_pb2_grpc  # noqa: E402

METERS = [f"burst-{i:02d}" for i in range(20)]
BEHIND = 50  # changes each token-started watch has to catch up
GOAL_SECONDS = 1.0
WRITER = "bench-writer"

BURST = r'''
import asyncio, json, resource, sys, time
import grpc
sys.path.insert(0, sys.argv[1])
from grpc_api.gen.meterusage.v1 import meter_usage_pb2 as pb, meter_usage_pb2_grpc

async def main(port, count, tokens):
    meters = list(tokens)
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        await channel.channel_ready()
        stub = meter_usage_pb2_grpc.MeterUsageServiceStub(channel)
        print("ready", flush=True)
        sys.stdin.readline()
        used = resource.getrusage(resource.RUSAGE_SELF)
        calls, began = [], []
        for i in range(count):
            meter = meters[i % len(meters)]
            token = tokens[meter] if i % 2 else ""
            began.append(time.perf_counter())
            calls.append(stub.WatchReadings(pb.WatchReadingsRequest(meters=[meter], resume_token=token)))

        async def first(call, start):
            try:
                await call.read()
                return time.perf_counter() - start, "OK"
            except grpc.RpcError as error:
                return time.perf_counter() - start, error.code().name

        results = await asyncio.gather(*(first(c, b) for c, b in zip(calls, began)))
        now = resource.getrusage(resource.RUSAGE_SELF)
        cpu = now.ru_utime + now.ru_stime - used.ru_utime - used.ru_stime
        print(json.dumps({"first": results, "cpu": cpu}), flush=True)
        for call in calls:
            call.cancel()

asyncio.run(main(int(sys.argv[2]), int(sys.argv[3]), json.loads(sys.argv[4])))
'''


def pct(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(len(ordered) * q))] if ordered else float("nan")


def prepare(env: dict, reference: Path) -> None:
    manage(env, "migrate", "--no-input")
    for meter in METERS:
        manage(env, "import_readings", str(reference), "--meter", meter)


def tokens_now(stub) -> dict[str, str]:
    """Each meter's resume token as of now (a catch-up-only watch's last message)."""
    found = {}
    for meter in METERS:
        for message in stub.WatchReadings(pb.WatchReadingsRequest(meters=[meter], catch_up_only=True)):
            found[meter] = message.resume_token
    return found


def write_behind(stub, round_number: int) -> None:
    """BEHIND new readings for each meter (times of a year of their own per round)."""
    base = 1_700_000_000 + round_number * 10_000_000
    run = time.time() % 1000  # values of this run: a reused database holds earlier runs' values
    for meter in METERS:
        readings = []
        for i in range(BEHIND):
            reading = pb.ReadingInput(meter=meter, value=run + i)
            reading.time.FromSeconds(base + i * 900)
            readings.append(reading)
        stub.WriteReadings(pb.WriteReadingsRequest(readings=readings), metadata=[("authorization", f"Bearer {WRITER}")])


def catch_up_seconds(stub, meter: str, token: str) -> tuple[float, int | str]:
    """Seconds to the end of a catch-up-only watch, and the changes it sent (or the error code)."""
    began = time.perf_counter()
    count = 0
    try:
        request = pb.WatchReadingsRequest(meters=[meter], resume_token=token, catch_up_only=True)
        for message in stub.WatchReadings(request, timeout=30):
            count += len(message.changes)
    except grpc.RpcError as error:
        count = error.code().name
    return time.perf_counter() - began, count


def feed_seconds(web_port: int, meter: str, token: str) -> tuple[float, int]:
    connection = http.client.HTTPConnection("127.0.0.1", web_port, timeout=60)
    began = time.perf_counter()
    connection.request("GET", f"/api/v1/meters/{meter}/changes/?after={quote(token)}", headers={"Accept": "application/json"})
    response = connection.getresponse()
    response.read()
    connection.close()
    return time.perf_counter() - began, response.status


def probes(stub, web_port: int, tokens: dict[str, str], until: threading.Event | None, at_least: int) -> dict:
    """Catch-ups and changes-feed answers, one after the other, until `until` is set (and at
    least `at_least` of each)."""
    caught, fed, statuses, counts = [], [], [], []
    i = 0
    while i < at_least or (until is not None and not until.is_set()):
        meter = METERS[i % len(METERS)]
        seconds, count = catch_up_seconds(stub, meter, tokens[meter])
        caught.append(seconds)
        counts.append(count)
        seconds, status = feed_seconds(web_port, meter, tokens[meter])
        fed.append(seconds)
        statuses.append(status)
        i += 1
    return {"catch_up": caught, "feed": fed, "statuses": statuses, "counts": counts}


def cpu_seconds(pid: int) -> float:
    """User and system CPU time of process `pid` so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def burst_round(env: dict, stub, port: int, web_port: int, watches: int, tokens: dict[str, str]) -> tuple[list, dict]:
    process = subprocess.Popen(
        [sys.executable, "-c", BURST, str(REPO), str(port), str(watches), json.dumps(tokens)],
        cwd=REPO, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )
    if process.stdout.readline().strip() != "ready":
        process.kill()
        raise RuntimeError("the burst process did not start")
    done = threading.Event()
    found: dict = {}
    prober = threading.Thread(target=lambda: found.update(probes(stub, web_port, tokens, done, 3)))
    process.stdin.write("go\n")
    process.stdin.flush()
    prober.start()
    answer = json.loads(process.stdout.readline())
    done.set()
    prober.join()
    process.wait(timeout=60)
    found["client_cpu"] = answer["cpu"]
    return answer["first"], found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--reference", default=os.environ.get("METERUSAGE_CSV", str(REPO.parent / "shared/data/meterusage.csv")))
    parser.add_argument("--postgres-url", default="postgres://postgres@127.0.0.1:5432/postgres")
    parser.add_argument("--sqlite", action="store_true", help="SQLite instead of PostgreSQL.")
    parser.add_argument("--watches", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--max-workers", type=int, default=10, help="grpcrunserver --max-workers.")
    parser.add_argument("--reuse-database", action="store_true", help="PostgreSQL: keep the database of an earlier run.")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as folder:
        env = {**os.environ, "DJANGO_DEBUG": "0", "GRPC_WRITE_TOKENS": WRITER, "API_CACHE_SECONDS": "0"}
        if args.sqlite:
            env["DATABASE_URL"] = f"sqlite:///{folder}/watch.sqlite3"
            store = "SQLite"
        else:
            import psycopg

            admin = args.postgres_url
            with psycopg.connect(admin, autocommit=True) as db:
                exists = db.execute("SELECT 1 FROM pg_database WHERE datname = 'watchbench'").fetchone()
                fresh = not (exists and args.reuse_database)
                if fresh:
                    db.execute("DROP DATABASE IF EXISTS watchbench WITH (FORCE)")
                    db.execute("CREATE DATABASE watchbench")
            env["DATABASE_URL"] = admin.rsplit("/", 1)[0] + "/watchbench"
            store = "PostgreSQL"
        if args.sqlite or fresh:
            prepare(env, Path(args.reference))
        grpc_process, port = start_server(
            [sys.executable, "manage.py", "grpcrunserver", "127.0.0.1:0", "--max-workers", str(args.max_workers)], env
        )
        web, web_port = start_gunicorn({**env, "GRPC_TARGET": f"127.0.0.1:{port}"}, workers=2)
        try:
            channel = grpc.insecure_channel(f"127.0.0.1:{port}")
            stub = meter_usage_pb2_grpc.MeterUsageServiceStub(channel)
            first_now, first_token, codes, server_cpu, burst_seconds, client_cpu = [], [], {}, [], [], []
            idle = {"catch_up": [], "feed": [], "statuses": [], "counts": []}
            busy = {"catch_up": [], "feed": [], "statuses": [], "counts": []}
            for round_number in range(args.rounds):
                tokens = tokens_now(stub)
                write_behind(stub, round_number)
                probes(stub, web_port, tokens, None, 2)  # warm: the first answers of a fresh server
                for key, values in probes(stub, web_port, tokens, None, 20).items():
                    idle[key] += values
                cpu_before, began = cpu_seconds(grpc_process.pid), time.perf_counter()
                results, during = burst_round(env, stub, port, web_port, args.watches, tokens)
                server_cpu.append((cpu_seconds(grpc_process.pid) - cpu_before) / args.watches * 1000)
                burst_seconds.append(time.perf_counter() - began)
                client_cpu.append(during.pop("client_cpu") / args.watches * 1000)
                for key, values in during.items():
                    busy[key] += values
                for i, (seconds, code) in enumerate(results):
                    codes[code] = codes.get(code, 0) + 1
                    (first_token if i % 2 else first_now).append(seconds)
                time.sleep(2)  # the burst's watches end on the server before the next round
        finally:
            for process in (web, grpc_process):
                process.terminate()
                try:
                    process.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    process.kill()

    def line(name, samples, baseline=None):
        p50, p99 = statistics.median(samples) * 1000, pct(samples, 0.99) * 1000
        base = f"{statistics.median(baseline) * 1000:.1f} / {pct(baseline, 0.99) * 1000:.1f}" if baseline else ""
        verdict = "pass" if p99 < GOAL_SECONDS * 1000 else "MISS"
        return f"| {name} | {len(samples):,} | {base} | {p50:.1f} / {p99:.1f} | < {GOAL_SECONDS * 1000:.0f} | {verdict} |"

    expected = {BEHIND}
    print(f"Watch burst on {store}: {args.watches:,} WatchReadings opened at once, {args.rounds} rounds; "
          f"grpcrunserver --max-workers {args.max_workers}, gunicorn 2 workers. ms, p50 / p99.")
    print()
    print("| figure | samples | nothing else going on | during the burst | p99 limit (ms) | verdict |")
    print("| --- | --- | --- | --- | --- | --- |")
    print(line("burst: first message of a watch from now", first_now))
    print(line(f"burst: first message of a watch from a token ({BEHIND} behind)", first_token))
    print(line(f"catch_up_only watch from a token ({BEHIND} changes)", busy["catch_up"], idle["catch_up"]))
    print(line("changes feed GET (gateway -> catch_up_only watch)", busy["feed"], idle["feed"]))
    print(f"| server CPU per watch opened (ms; the burst until every first message, probes included) | "
          f"{len(server_cpu)} | | {statistics.median(server_cpu):.2f} | | |")
    print(f"| the burst's client CPU per watch opened (ms) | {len(client_cpu)} | | {statistics.median(client_cpu):.2f} | | |")
    print(f"| the burst until every first message (s) | {len(burst_seconds)} | | {statistics.median(burst_seconds):.2f} | | |")
    statuses = {s: busy["statuses"].count(s) for s in sorted(set(busy["statuses"]))}
    feed_ok = set(busy["statuses"]) | set(idle["statuses"]) == {200}
    print()
    print(f"Burst watches' first answers: {codes}. Changes feed statuses during bursts: {statuses} "
          f"(goal: never 504, only 200: {'pass' if feed_ok else 'MISS'}). Catch-ups counted "
          f"{sorted(set(busy['counts'] + idle['counts']))} changes (expected {sorted(expected)}).")


if __name__ == "__main__":
    main()
