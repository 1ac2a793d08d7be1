"""InfluxDB benchmark: seeding throughput against the server's own limit, and read latency.

In one run, on the same data (about 1M generated 15-minute readings of one meter):

- seed_influx's points/s (reading and cleaning the CSV included, relational mirror off), beside
  the limit: the same line protocol, prepared in advance, posted in the same batch sizes over one
  keep-alive session. Goal: at least 70% of the limit. With the mirror on, for information.
- ListReadings for a month of readings and AggregateReadings for a month of days, served by the
  `influxdb` source through a real `grpcrunserver`, each beside the same InfluxQL sent straight to
  InfluxDB over HTTP from Python (requests, one kept-alive session, JSON parsed), calls
  alternating. Goal: at most 1.5x.

influxd is started on a free loopback port in a temporary folder (Debian's `influxdb` package).
Run from the repository root:

    .venv/bin/python bench/influx_bench.py [--rows 1000000] [--repeats 5] [--batch-size 5000]
"""
import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

from common import alternating, manage, start_server, ts  # puts the repository on sys.path

GOAL = 0.70
GOAL_READS = 1.5
MONTH = ("2019-03-01T00:00:00Z", "2019-04-01T00:00:00Z")
MONTH_SECONDS = (1551398400, 1554076800)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--batch-size", type=int, default=5000, help="Points per write request.")
    parser.add_argument("--calls", type=int, default=100, help="Calls per latency figure.")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="influx-bench-") as tmp:
        folder = Path(tmp)
        from testing.influxd import InfluxServer

        # No authentication: InfluxDB 1.x checks a bcrypt hash on every request, which would
        # measure the password hashing rather than the writes.
        influxd = InfluxServer(folder / "influxd", auth=False)
        influxd.start()
        database = "bench"
        env = {
            **os.environ, "DATABASE_URL": f"sqlite:///{folder / 'bench.sqlite3'}",
            "INFLUXDB_URL": influxd.url, "INFLUXDB_DATABASE": database,
            "DJANGO_LOG_LEVEL": "WARNING",
        }
        os.environ.update(env)
        try:
            path = folder / "gen.csv"
            manage(env, "migrate", "--no-input")
            manage(env, "generate_readings", "--days", str(-(-args.rows // 96) + 1), "--out", str(path), "--seed", "3")
            seeding = seed_rates(influxd, database, path, args)
            manage(env, "seed_influx", str(path), "--meter", "gen-influx", "--no-mirror", "--create-database")
            latencies = read_latencies(env, args.calls)
        finally:
            influxd.stop()
    report(seeding, latencies, args)


def seed_rates(influxd, database: str, path: Path, args) -> dict:
    import django

    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "meterproject.settings")
    django.setup()
    import requests

    from readings.csvreader import read_readings
    from readings.sources.influx.client import line_protocol
    from readings.writes.imports import readings_seed
    from readings.writes.rows import RowReport

    # The limit's request bodies: the same cleaned points, in the same batch sizes, built beforehand.
    bodies = []
    for batch in read_readings(path, report=RowReport()):
        for low in range(0, len(batch), args.batch_size):
            high = low + args.batch_size
            bodies.append(line_protocol("limit", batch.epochs[low:high], batch.values[low:high]))
    points = sum(body.count(b"\n") for body in bodies)

    def fresh_database():
        influxd.query(f'DROP DATABASE "{database}"')
        influxd.query(f'CREATE DATABASE "{database}"')

    def limit_run() -> float:
        fresh_database()
        session = requests.Session()
        began = time.perf_counter()
        for body in bodies:
            session.post(f"{influxd.url}/write", params={"db": database, "precision": "s"}, data=body).raise_for_status()
        return points / (time.perf_counter() - began)

    def seed_run(mirror: bool) -> float:
        fresh_database()
        began = time.perf_counter()
        run = readings_seed(path=path, meter_name="seeded", mirror=mirror, batch_size=args.batch_size)
        elapsed = time.perf_counter() - began
        assert run.points_written == points, (run.points_written, points)
        return points / elapsed

    limits, seeds = [], []
    for _ in range(args.repeats):  # interleaved, so that drift on a shared machine hits both
        limits.append(limit_run())
        seeds.append(seed_run(mirror=False))
    mirrored = [seed_run(mirror=True) for _ in range(max(1, args.repeats // 2))]
    return {
        "points": points,
        "limit": statistics.median(limits),
        "seed": statistics.median(seeds),
        "mirrored": statistics.median(mirrored),
    }


def read_latencies(env: dict, calls: int) -> dict:
    """Median ms of each call through gRPC and of the same InfluxQL straight to InfluxDB."""
    import grpc
    import orjson
    import requests

    from grpc_api.gen.meterusage.v1 import meter_usage_pb2 as pb
    from grpc_api.gen.meterusage.v1 import meter_usage_pb2_grpc

    where = f"FROM \"meter_usage\" WHERE meter = 'gen-influx' AND time >= {MONTH_SECONDS[0]}s AND time < {MONTH_SECONDS[1]}s"
    statements = {
        "month of readings": [f"SELECT value {where} ORDER BY time ASC LIMIT 10001"],
        # What the source asks for a month of days: the partials by local day, and the extremes.
        "month of days": [
            f"SELECT count(value), sum(value), min(value), max(value) {where} GROUP BY time(1d) fill(none) tz('Europe/Amsterdam')",
            f"SELECT min(value) {where}", f"SELECT max(value) {where}",
        ],
    }
    session = requests.Session()

    def straight(queries):
        def call():
            response = session.get(f"{env['INFLUXDB_URL']}/query",
                                   params={"db": env["INFLUXDB_DATABASE"], "q": "; ".join(queries), "epoch": "s"})
            orjson.loads(response.content)

        return call

    server, port = start_server([sys.executable, "manage.py", "grpcrunserver", "127.0.0.1:0"], env)
    results = {}
    try:
        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
            stub = meter_usage_pb2_grpc.MeterUsageServiceStub(channel)
            span = dict(meter="gen-influx", start_time=ts(MONTH[0]), end_time=ts(MONTH[1]))
            month = pb.ListReadingsRequest(**span, page_size=10_000)
            days = pb.AggregateReadingsRequest(**span, window=pb.WINDOW_DAY, time_zone="Europe/Amsterdam")
            for name, project in (("month of readings", lambda: stub.ListReadings(month)),
                                  ("month of days", lambda: stub.AggregateReadings(days))):
                project_ms, straight_ms = alternating(project, straight(statements[name]), calls)
                results[name] = statistics.median(project_ms), statistics.median(straight_ms)
    finally:
        server.terminate()
        server.wait(timeout=20)
    return results


def report(seeding: dict, latencies: dict, args) -> None:
    ratio = seeding["seed"] / seeding["limit"]
    print()
    print(f"InfluxDB benchmark: {seeding['points']:,} points, batches of {args.batch_size}, medians of {args.repeats} runs")
    print("| measurement | project | limit / baseline | ratio | goal |")
    print("| --- | --- | --- | --- | --- |")
    print(f"| seed_influx --no-mirror, points/s (CSV parsing included) | {seeding['seed']:,.0f} | "
          f"{seeding['limit']:,.0f} (prepared line protocol, one session) | {ratio:.2f} | "
          f">= {GOAL}: {'PASS' if ratio >= GOAL else 'MISS'} |")
    print(f"| seed_influx with the relational mirror (SQLite), points/s | {seeding['mirrored']:,.0f} | "
          f"{seeding['limit']:,.0f} | {seeding['mirrored'] / seeding['limit']:.2f} | (information) |")
    for name, label in (("month of readings", "ListReadings, a month of readings (2976)"),
                        ("month of days", "AggregateReadings, a month of days (Amsterdam)")):
        project, straight = latencies[name]
        ratio = project / straight
        print(f"| {label}, median ms | {project:.2f} | {straight:.2f} (the same InfluxQL over HTTP) | {ratio:.2f} | "
              f"<= {GOAL_READS}: {'pass' if ratio <= GOAL_READS else 'MISS'} |")


if __name__ == "__main__":
    main()
