"""HTTP gateway benchmark: latency of the JSON API beside the direct gRPC call for the same query.

In one run, on the same data (the reference month and a generated year of 15-minute readings,
imported into a fresh SQLite file, or the database at --database-url):

- `meters/meterusage/readings/` for the reference month (2974 readings, one page), against
  ListReadings with the same range and page size;
- `meters/gen-year/aggregates/?window=day` for the year (366 windows), against AggregateReadings;
- the JSON encoding of the month's document with orjson and with the standard library, which is
  why the gateway renders JSON with orjson.

The gRPC server is `manage.py grpcrunserver` in its own process; the gateway is gunicorn (sync
workers) in another, calling that server. Both are called from this process over loopback, one
call at a time on a kept-alive connection; the HTTP body is read and parsed, as the gRPC response
is; the two alternate call by call. Goal: the gateway's answer takes at most twice the gRPC call
in total (median), for each query. Run from the repository root:

    .venv/bin/python bench/gateway_bench.py              # 300 calls per figure
    .venv/bin/python bench/gateway_bench.py --calls 100  # quicker
"""
import argparse
import http.client
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from urllib.parse import urlencode

import grpc
import orjson

import common  # puts the repository on sys.path
from common import REPO, alternating, manage, start_server, ts

from grpc_api.gen.meterusage.v1 import meter_usage_pb2 as pb  # noqa: E402
from grpc_api.gen.meterusage.v1 import meter_usage_pb2_grpc  # noqa: E402

MONTH = ("2019-01-01T00:00:00Z", "2019-02-01T00:00:00Z")
YEAR = ("2020-01-01T00:00:00Z", "2021-01-01T00:00:00Z")
GOAL_RATIO = 2.0


def prepare_data(env: dict, folder: Path, reference: Path) -> None:
    manage(env, "migrate", "--no-input")
    manage(env, "import_readings", str(reference), "--meter", "meterusage")
    year = folder / "gen-year.csv"
    manage(env, "generate_readings", "--days", "366", "--start", "2020-01-01", "--seed", "7", "--out", str(year))
    manage(env, "import_readings", str(year), "--meter", "gen-year")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def start_grpc(env: dict) -> tuple[subprocess.Popen, int]:
    return start_server([sys.executable, "manage.py", "grpcrunserver", "127.0.0.1:0", "--max-workers", "4"], env)


def start_gunicorn(env: dict, workers: int) -> tuple[subprocess.Popen, int]:
    # One client address, many calls: no rate limit in the way; every call reaches the service.
    return common.start_gunicorn({**env, "API_CACHE_SECONDS": "0", "API_RATE_ANONYMOUS": "none"}, workers)


def http_get(connection: http.client.HTTPConnection, url: str, expect: int):
    def call():
        connection.request("GET", url, headers={"Accept": "application/json"})
        response = connection.getresponse()
        body = response.read()
        if response.status != 200:
            raise RuntimeError(f"{url}: HTTP {response.status}: {body[:300]!r}")
        document = orjson.loads(body)
        count = len(document.get("readings") or document.get("buckets"))
        if count != expect:
            raise RuntimeError(f"{url}: {count} items, expected {expect}")

    return call


def median_p99(samples: list[float]) -> tuple[float, float]:
    ordered = sorted(samples)
    return statistics.median(ordered), ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]


def encode_ms(document: dict, dumps, repeats: int = 50) -> float:
    samples = []
    for _ in range(repeats):
        began = time.perf_counter()
        dumps(document)
        samples.append((time.perf_counter() - began) * 1000)
    return statistics.median(samples)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--reference", default=os.environ.get("METERUSAGE_CSV", str(REPO.parent / "shared/data/meterusage.csv")))
    parser.add_argument("--database-url", help="Use this (empty) database instead of a temporary SQLite file.")
    parser.add_argument("--calls", type=int, default=300, help="Calls per latency figure.")
    parser.add_argument("--workers", type=int, default=2, help="gunicorn workers.")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="gateway-bench-") as tmp:
        folder = Path(tmp)
        env = {**os.environ, "DATABASE_URL": args.database_url or f"sqlite:///{folder / 'bench.sqlite3'}",
               "DJANGO_DEBUG": "false", "DJANGO_SECRET_KEY": "gateway-bench-only", "DJANGO_LOG_LEVEL": "WARNING",
               "PYTHONUNBUFFERED": "1"}
        print("Preparing data (reference month, a generated year) ...", flush=True)
        prepare_data(env, folder, Path(args.reference))
        grpc_server, grpc_port = start_grpc(env)
        web, web_port = start_gunicorn({**env, "GRPC_TARGET": f"127.0.0.1:{grpc_port}"}, args.workers)
        try:
            with grpc.insecure_channel(f"127.0.0.1:{grpc_port}") as channel:
                report(args, meter_usage_pb2_grpc.MeterUsageServiceStub(channel), web_port)
        finally:
            for process in (web, grpc_server):
                process.terminate()
                process.wait(timeout=20)


def report(args, stub, web_port: int) -> None:
    connection = http.client.HTTPConnection("127.0.0.1", web_port, timeout=30)
    month_query = urlencode({"start": MONTH[0], "end": MONTH[1], "page_size": 10000})
    year_query = urlencode({"start": YEAR[0], "end": YEAR[1], "window": "day", "tz": "UTC"})
    readings_url = f"/api/v1/meters/meterusage/readings/?{month_query}"
    aggregates_url = f"/api/v1/meters/gen-year/aggregates/?{year_query}"

    readings_request = pb.ListReadingsRequest(meter="meterusage", start_time=ts(MONTH[0]), end_time=ts(MONTH[1]), page_size=10000)
    aggregates_request = pb.AggregateReadingsRequest(
        meter="gen-year", start_time=ts(YEAR[0]), end_time=ts(YEAR[1]), window=pb.WINDOW_DAY, time_zone="UTC",
    )

    def grpc_readings():
        if len(stub.ListReadings(readings_request).readings) != 2974:
            raise RuntimeError("ListReadings: not 2974 readings")

    def grpc_aggregates():
        if len(stub.AggregateReadings(aggregates_request).buckets) != 366:
            raise RuntimeError("AggregateReadings: not 366 buckets")

    rows = []
    for label, direct, gateway in (
        ("readings/, one month (2974 readings)", grpc_readings, http_get(connection, readings_url, 2974)),
        ("aggregates/?window=day, one year (366 windows)", grpc_aggregates, http_get(connection, aggregates_url, 366)),
    ):
        direct_samples, gateway_samples = alternating(direct, gateway, args.calls)
        rows.append((label, *median_p99(direct_samples), *median_p99(gateway_samples)))

    connection.request("GET", readings_url)
    month_document = orjson.loads(connection.getresponse().read())
    orjson_ms = encode_ms(month_document, orjson.dumps)
    stdlib_ms = encode_ms(month_document, lambda d: json.dumps(d).encode())

    print()
    print(f"Gateway benchmark: gunicorn ({args.workers} workers) -> grpcrunserver, SQLite, {args.calls} calls of each "
          "kind, gateway and gRPC alternating")
    print("| query | gRPC direct, median / p99 ms | HTTP gateway, median / p99 ms | gateway / gRPC | goal |")
    print("| --- | --- | --- | --- | --- |")
    for label, direct_median, direct_p99, gateway_median, gateway_p99 in rows:
        ratio = gateway_median / direct_median
        goal = f"gateway <= {GOAL_RATIO:g}x gRPC: {'pass' if ratio <= GOAL_RATIO else 'MISS'}"
        print(f"| {label} | {direct_median:.2f} / {direct_p99:.2f} | {gateway_median:.2f} / {gateway_p99:.2f} "
              f"| {ratio:.2f}x | {goal} |")
    print(f"| JSON encoding of the month's document | | orjson {orjson_ms:.2f} ms, json {stdlib_ms:.2f} ms "
          f"| {stdlib_ms / orjson_ms:.1f}x faster | | |")


if __name__ == "__main__":
    main()
