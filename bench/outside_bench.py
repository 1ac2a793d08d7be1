"""Outside benchmark: one meter's month, as a client that knows nothing of the project sees it,
beside the same query sent straight to the store.

The store: --meters generated meters of two years each (15: about 1M readings), built with the
project's own `generate_readings` and `import_readings` once and kept under --cache-dir (the same
stores as scale_bench.py). The server: `manage.py grpcrunserver` started as a user starts it, a
process of its own with DJANGO_DEBUG=0 and the settings' defaults otherwise, on a free port.

The client imports nothing of the project's generated code: it asks the server's reflection
service for the file descriptors of meterusage.v1, builds the request classes from them
(descriptor_pool + message_factory.GetMessageClass), calls the methods by path with
`channel.unary_unary` and decodes each reply with the reflected response class.

Call after call, interleaved (--calls rounds of five, with the empty call below): `ListReadings` of the meter's month, the
same rows fetched straight from the store (psycopg / sqlite3, into numpy), `AggregateReadings`
by day in the meter's zone (UTC), and the same GROUP BY straight from the store: the SQL of
stores.direct_calls, which scale_bench.py times too. Goal: each call at most 2x its query.
Beside the client's figure, the server's own time for the call as its call log states it (from
the first interceptor to the last on the worker thread): what is left is the transport, the
event loop, the hop to the worker pool and back, and the client; and, in the same rounds, an
empty call through the same channel (grpc.health.v1 Check, answered on the server's event loop),
the least any call costs.

    .venv/bin/python bench/outside_bench.py                       # both stores, 500 rounds
    .venv/bin/python bench/outside_bench.py --stores sqlite --calls 200
    .venv/bin/python bench/outside_bench.py --stores postgresql --postgres-server-env DATABASE_PREPARED_STATEMENTS=true
"""
import argparse
import os
import re
import statistics
import subprocess
import sys
import time
from pathlib import Path

import grpc
from google.protobuf import descriptor_pool, message_factory
from grpc_reflection.v1alpha.proto_reflection_descriptor_database import ProtoReflectionDescriptorDatabase

from common import REPO  # puts the repository on sys.path
from stores import DAYS, MONTH, Store, build, direct_calls, generated

SERVICE = "meterusage.v1.MeterUsageService"
GOAL = 2.0
# The server's call log line (grpc_api.interceptors.CallLogInterceptor): method, status, duration.
CALL_LOG = re.compile(r"/meterusage\.v1\.MeterUsageService/(\w+) OK ([\d.]+)ms")


def start_logged_server(env: dict, log: Path):
    """`manage.py grpcrunserver` on a free port, its output (a log line a call) going to `log`, a
    file read after the run: a pipe read while timing would take the client's own time."""
    output = log.open("w")
    server = subprocess.Popen([sys.executable, "manage.py", "grpcrunserver", "127.0.0.1:0"], cwd=REPO, env=env,
                              stdout=output, stderr=subprocess.STDOUT, text=True)
    output.close()
    deadline = time.monotonic() + 60
    while (match := re.search(r"127\.0\.0\.1:(\d+)", log.read_text())) is None:
        if server.poll() is not None or time.monotonic() > deadline:
            server.kill()
            raise RuntimeError(f"server did not start: {log.read_text()[-2000:]}")
        time.sleep(0.1)
    return server, int(match[1])


def call_log(log: Path) -> dict[str, list[float]]:
    """The duration the server logged for each call, by method: its own time for a call, from the
    interceptors in."""
    durations = {}
    for method, milliseconds in CALL_LOG.findall(log.read_text()):
        durations.setdefault(method, []).append(float(milliseconds))
    return durations


class ReflectedClient:
    """Calls the service's unary methods with classes built from the server's own descriptors."""

    def __init__(self, channel: grpc.Channel):
        self.channel = channel
        self.pool = descriptor_pool.DescriptorPool(ProtoReflectionDescriptorDatabase(channel))

    def method(self, name: str, service: str = SERVICE):
        """(request class, a callable that sends a request and returns the decoded reply)."""
        method = self.pool.FindServiceByName(service).FindMethodByName(name)
        request_class = message_factory.GetMessageClass(method.input_type)
        response_class = message_factory.GetMessageClass(method.output_type)
        call = self.channel.unary_unary(
            f"/{service}/{method.name}",
            request_serializer=request_class.SerializeToString,
            response_deserializer=response_class.FromString,
        )
        return request_class, call

    def enum_value(self, message_class, field: str, name: str) -> int:
        return message_class.DESCRIPTOR.fields_by_name[field].enum_type.values_by_name[name].number


def seconds(text: str) -> int:
    from datetime import datetime

    return int(datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp())


def month_calls(client: ReflectedClient, meter: str):
    """The two calls of one meter's month, ready to send, and the readings the first returns."""
    list_class, list_call = client.method("ListReadings")
    aggregate_class, aggregate_call = client.method("AggregateReadings")
    start, end = map(seconds, MONTH)
    list_request = list_class(meter=meter, page_size=10_000)
    aggregate_request = aggregate_class(meter=meter, window=client.enum_value(aggregate_class, "window", "WINDOW_DAY"))
    for request in (list_request, aggregate_request):
        request.start_time.seconds, request.end_time.seconds = start, end
    readings = len(list_call(list_request).readings)
    days = len(aggregate_call(aggregate_request).buckets)
    return (lambda: list_call(list_request)), (lambda: aggregate_call(aggregate_request)), readings, days


def percentile(samples: list[float], fraction: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(len(ordered) * fraction))]


def measure(store: Store, meter: str, calls: int, server_env: dict) -> list[str]:
    direct_rows, direct_buckets, connection = direct_calls(store, meter)
    env = {**store.env, "DJANGO_DEBUG": "0", **server_env}
    if "DJANGO_LOG_LEVEL" not in server_env:
        env.pop("DJANGO_LOG_LEVEL")  # the server's own default (INFO: a line a call), as a user runs it
    log = store.args.cache_dir / f"outside-server-{store.kind}.log"
    server, port = start_logged_server(env, log)
    try:
        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
            client = ReflectedClient(channel)
            list_month, aggregate_month, readings, days = month_calls(client, meter)
            expected = len(direct_rows())
            if readings != expected:
                raise RuntimeError(f"ListReadings returned {readings} readings, the store holds {expected}")
            # The floor: an empty call answered on the server's event loop (no worker thread, no
            # store), grpc.health.v1's Check, through the same channel.
            check_class, check = client.method("Check", "grpc.health.v1.Health")
            check_request = check_class()
            order = {
                "ListReadings": list_month, "rows": direct_rows,
                "AggregateReadings(day)": aggregate_month, "GROUP BY": direct_buckets,
                "empty call": lambda: check(check_request),
            }
            samples = {name: [] for name in order}
            for call in order.values():
                for _ in range(20):
                    call()
            for _ in range(calls):
                for name, call in order.items():
                    began = time.perf_counter()
                    call()
                    samples[name].append((time.perf_counter() - began) * 1000)
    finally:
        connection.close()
        server.terminate()
        server.wait(timeout=30)
    logged = call_log(log)
    lines = []
    label = store.kind + "".join(f", {name}={value}" for name, value in server_env.items())
    floor = statistics.median(samples["empty call"])
    for project, direct, what in (("ListReadings", "rows", f"{readings:,} readings"),
                                  ("AggregateReadings(day)", "GROUP BY", f"{days} days")):
        ours, theirs = statistics.median(samples[project]), statistics.median(samples[direct])
        own = logged.get(project.split("(")[0], [])[-calls:]
        ratio = ours / theirs
        lines.append(
            f"| {label} | {project}, one month ({what}) | {ours:.2f} / {percentile(samples[project], 0.99):.2f} | "
            f"{statistics.median(own) if own else float('nan'):.2f} | {floor:.2f} | "
            f"{theirs:.2f} / {percentile(samples[direct], 0.99):.2f} ({direct}) | {ratio:.2f}x | "
            f"<= {GOAL:g}x: {'pass' if ratio <= GOAL else 'MISS'} |"
        )
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--meters", type=int, default=15, help="Meters of two years each (15: about 1M readings).")
    parser.add_argument("--stores", nargs="+", default=["sqlite", "postgresql"], choices=["postgresql", "sqlite"])
    parser.add_argument("--postgres-url", default=os.environ.get("TEST_POSTGRES_URL", "postgres://postgres@127.0.0.1:5432/postgres"))
    parser.add_argument("--cache-dir", type=Path, default=Path("/var/tmp/meterusage-bench"))
    parser.add_argument("--calls", type=int, default=500, help="Interleaved rounds: one call of each kind a round.")
    parser.add_argument("--server-env", nargs="*", default=[], metavar="NAME=VALUE",
                        help="Environment of every server started, beside DJANGO_DEBUG=0 (e.g. DJANGO_LOG_LEVEL=WARNING).")
    parser.add_argument("--postgres-server-env", nargs="*", default=[], metavar="NAME=VALUE",
                        help="Environment of the PostgreSQL server only (e.g. DATABASE_PREPARED_STATEMENTS=true).")
    args = parser.parse_args()
    args.cache_dir.mkdir(parents=True, exist_ok=True)

    files = generated(args, f"fill-{args.meters}x{DAYS}", meters=args.meters, days=DAYS, start="2019-01-01", seed=1)
    lines, built = [], []
    for kind in args.stores:
        store = Store(kind, args, f"meterusage_scale_{args.meters}x{DAYS}")
        made = build(store, files)
        built.append(f"{kind}: {made['readings']:,} readings (built in {made['seconds']:.0f} s with `manage.py import_readings`)")
        print(built[-1], flush=True)
        server_env = dict(pair.split("=", 1) for pair in args.server_env)
        if kind == "postgresql":
            server_env |= dict(pair.split("=", 1) for pair in args.postgres_server_env)
        lines += measure(store, "m-001", args.calls, server_env)
        print("\n".join(lines[-2:]), flush=True)

    print(f"\nOutside benchmark: a client built from server reflection, {args.calls} rounds, each call beside "
          "the same query straight to the store, interleaved; milliseconds.")
    print("\n".join(f"- {line}" for line in built))
    print("\n| store | call | gRPC median / p99 | the server's own (its call log), median | an empty call "
          "(health Check), median | straight to the store median / p99 | ratio of medians | goal |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
