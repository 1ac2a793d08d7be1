"""gRPC benchmark: ListReadings latency, StreamReadings throughput and server memory.

Measures, in one run on the same data (the reference month and generated meters imported into a
fresh SQLite file, or the database at --database-url):

- ListReadings latency for one month (median and p99), for the reference meter and for a month
  of the generated 1M-reading meter;
- StreamReadings throughput of 1M readings received and decoded by a Python client, from the
  relational store (`sql` source) and from the same file (`csv` source), each beside
  (a) a baseline server streaming the same readings from the same source one per message, as
  naive implementations do, (b) the limit of the stream: encoding and decoding the same messages
  in one process, with no network and no store, and, for the relational store, (c) the limit of
  the store: a raw fetch of the same rows through the driver (psycopg or sqlite3) into numpy;
- the batch size of StreamReadings messages against throughput;
- the server's RSS growth while it streams --rss-readings readings (10M by default).

The project's server is `manage.py grpcrunserver` in its own process; the baseline server is
this script with --serve-baseline. Run from the repository root:

    .venv/bin/python bench/grpc_bench.py                  # full run (about 3 minutes)
    .venv/bin/python bench/grpc_bench.py --rss-readings 1000000 --repeats 3   # quicker
"""
import argparse
import os
import statistics
import sys
import threading
import time
from pathlib import Path

import grpc
import numpy as np
from common import REPO, latency, manage, start_server, ts  # puts the repository on sys.path

from grpc_api.gen.meterusage.v1 import meter_usage_pb2 as pb  # noqa: E402
from grpc_api.gen.meterusage.v1 import meter_usage_pb2_grpc  # noqa: E402

BASELINE_METHOD = "/bench.Baseline/StreamReadings"
START = "1970-01-01T00:00:00Z"
END = "2400-01-01T00:00:00Z"
GOAL_VS_BASELINE = 20
GOAL_VS_LIMIT = 0.25
GOAL_VS_RAW_FETCH = 0.5
GOAL_RSS_MB = 64


def prepare_data(env: dict, folder: Path, reference: Path, rss_readings: int, stamp: Path) -> None:
    """Meters in the relational store, and gen-1m-csv: the same file served by the csv source.

    Generated files are kept in `folder` and the filled store is noted in `stamp`, so that a later
    run on the same store (the database at --database-url, or the SQLite file under --cache-dir)
    skips the import: 10M readings into PostgreSQL, each also written to the change log, take
    minutes. The steps are timed and printed."""
    manage(env, "migrate", "--no-input", "--verbosity", "0")
    if stamp.exists() and stamp.read_text() == meters_filled(env):
        print(f"  the store was filled by an earlier run ({stamp}); not imported again", flush=True)
        return
    began = time.perf_counter()
    manage(env, "import_readings", str(reference), "--meter", "meterusage", "--verbosity", "0")
    for name, readings in (("gen-1m", 1_000_000), ("gen-rss", rss_readings)):
        days = -(-readings // 96) + 1
        path = folder / f"{name}-{days}.csv"
        if not path.exists():
            step = time.perf_counter()
            manage(env, "generate_readings", "--days", str(days), "--out", str(path) + ".part", "--seed", "7",
                   "--verbosity", "0")
            (folder / f"{name}-{days}.csv.part").rename(path)
            print(f"  generate_readings {name}: {time.perf_counter() - step:.0f} s", flush=True)
        step = time.perf_counter()
        manage(env, "import_readings", str(path), "--meter", name, "--verbosity", "0")
        print(f"  import_readings {name} ({readings:,} readings): {time.perf_counter() - step:.0f} s", flush=True)
        if name == "gen-1m":
            (folder / "gen-1m-csv.csv").write_bytes(path.read_bytes())
    manage(env, "shell", "-c", "from readings.models import Meter; Meter.objects.get_or_create(name='gen-1m-csv', source='csv')")
    stamp.write_text(meters_filled(env))
    print(f"  store filled in {time.perf_counter() - began:.0f} s", flush=True)


def meters_filled(env: dict) -> str:
    """The bench's meters and their reading counts, as the store holds them now."""
    return manage(env, "shell", "-c", "from readings.models import Meter; print(sorted(Meter.objects.filter("
                  "name__in=['meterusage', 'gen-1m', 'gen-rss', 'gen-1m-csv']).values_list('name', 'reading_count')))")


def latency_ms(stub, meter: str, start: str, end: str, calls: int) -> tuple[float, float]:
    request = pb.ListReadingsRequest(meter=meter, start_time=ts(start), end_time=ts(end), page_size=10_000)
    return latency(lambda: stub.ListReadings(request), calls)


def stream_rate(call, request, limit: int = 0) -> tuple[float, int]:
    """Readings/s a client receives and decodes into numpy; with `limit`, over the first `limit`
    readings (then the call is cancelled)."""
    began = time.perf_counter()
    received = 0
    messages = call(request)
    for message in messages:
        times = np.asarray(message.times, dtype=np.int64)
        np.asarray(message.values, dtype=np.float64)
        received += len(times)
        if limit and received >= limit:
            messages.cancel()
            break
    return received / (time.perf_counter() - began), received


def limit_rate(times: np.ndarray, values: np.ndarray, batch: int) -> float:
    """Encode and decode the same messages in this process: what protobuf allows at all."""
    began = time.perf_counter()
    for low in range(0, len(times), batch):
        message = pb.StreamReadingsResponse(
            times=times[low:low + batch].tolist(), values=values[low:low + batch].tolist(), resume_token="x" * 80
        )
        decoded = pb.StreamReadingsResponse.FromString(message.SerializeToString())
        np.asarray(decoded.times, dtype=np.int64)
        np.asarray(decoded.values, dtype=np.float64)
    return len(times) / (time.perf_counter() - began)


def raw_fetch_rate(database_url: str, meter: str) -> float:
    """Readings/s of the fastest plain fetch of the meter's rows through the driver into numpy,
    batch by batch as a stream reads them."""
    sql = ("SELECT {epoch}, value FROM readings_reading WHERE meter_id = (SELECT id FROM readings_meter "
           "WHERE name = {p}) ORDER BY time")
    if database_url.startswith("postgres"):
        import psycopg

        connection = psycopg.connect(database_url)
        statement, params = sql.format(epoch="EXTRACT(EPOCH FROM time)::bigint", p="%s"), [meter]
    else:
        import sqlite3

        connection = sqlite3.connect(database_url.removeprefix("sqlite:///"))
        statement, params = sql.format(epoch="unixepoch(time)", p="?"), [meter]
    try:
        began = time.perf_counter()
        cursor = connection.execute(statement, params)
        received = 0
        while rows := cursor.fetchmany(16_384):
            received += len(np.array(rows, dtype=np.float64))
        return received / (time.perf_counter() - began)
    finally:
        connection.close()


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def rss_growth(stub, pid: int, meter: str) -> tuple[float, float, int]:
    stream_rate(stub.StreamReadings, pb.StreamReadingsRequest(meter="meterusage", start_time=ts(START), end_time=ts(END)))
    before = rss_mb(pid)
    peak = before
    done = threading.Event()

    def sample():
        nonlocal peak
        while not done.is_set():
            peak = max(peak, rss_mb(pid))
            done.wait(0.05)

    sampler = threading.Thread(target=sample)
    sampler.start()
    try:
        _, received = stream_rate(
            stub.StreamReadings, pb.StreamReadingsRequest(meter=meter, start_time=ts(START), end_time=ts(END))
        )
    finally:
        done.set()
        sampler.join()
    return before, peak, received


def serve_baseline() -> None:
    """A server that streams the same readings from the same store, one reading per message."""
    import django

    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "meterproject.settings")
    django.setup()
    from concurrent import futures

    from grpc_api import convert
    from readings import selectors

    def one_per_message(request, context):
        batches = selectors.reading_batches(
            meter_name=request.meter, start=convert.instant_of(request, "start_time"),
            end=convert.instant_of(request, "end_time"), batch_size=0, resume_token="",
        )
        for series, _ in batches:
            for t, v in zip(series.times.tolist(), series.values.tolist()):
                yield pb.StreamReadingsResponse(times=[t], values=[v])

    handler = grpc.method_handlers_generic_handler("bench.Baseline", {
        "StreamReadings": grpc.unary_stream_rpc_method_handler(
            one_per_message,
            request_deserializer=pb.StreamReadingsRequest.FromString,
            response_serializer=pb.StreamReadingsResponse.SerializeToString,
        )
    })
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    server.add_generic_rpc_handlers((handler,))
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    print(f"Serving baseline on 127.0.0.1:{port}", flush=True)
    server.wait_for_termination()


def row(name: str, project: str, baseline: str = "", limit: str = "", ratio: str = "", goal: str = "") -> str:
    return f"| {name} | {project} | {baseline} | {limit} | {ratio} | {goal} |"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--serve-baseline", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--reference", default=os.environ.get("METERUSAGE_CSV", str(REPO.parent / "shared/data/meterusage.csv")))
    parser.add_argument("--database-url", help="Use this database (empty, or filled by an earlier run) instead of a SQLite file.")
    parser.add_argument("--cache-dir", type=Path, default=Path("/var/tmp/meterusage-bench"),
                        help="Where generated files, the SQLite store and the notes of filled stores are kept.")
    parser.add_argument("--rss-readings", type=int, default=10_000_000)
    parser.add_argument("--repeats", type=int, default=5, help="Runs of each stream measurement (median).")
    parser.add_argument("--baseline-readings", type=int, default=100_000,
                        help="Readings of each one-per-message baseline stream timed (0: all).")
    parser.add_argument("--calls", type=int, default=200, help="ListReadings calls per latency figure.")
    args = parser.parse_args()
    if args.serve_baseline:
        serve_baseline()
        return

    began = time.perf_counter()
    folder = args.cache_dir / "grpc-bench"
    folder.mkdir(parents=True, exist_ok=True)
    database_url = args.database_url or f"sqlite:///{folder / 'bench.sqlite3'}"
    env = {**os.environ, "DATABASE_URL": database_url, "READINGS_CSV_DIRECTORY": str(folder),
           "DJANGO_LOG_LEVEL": "WARNING", "PYTHONUNBUFFERED": "1"}
    store_name = database_url.rsplit("/", 1)[-1].split("?")[0]
    stamp = folder / f"filled-{'postgresql' if database_url.startswith('postgres') else 'sqlite'}-{store_name}-{args.rss_readings}.txt"
    print(f"Preparing data ({args.rss_readings:,} readings for the memory run) ...", flush=True)
    prepare_data(env, folder, Path(args.reference), args.rss_readings, stamp)
    server, port = start_server([sys.executable, "manage.py", "grpcrunserver", "127.0.0.1:0"], env)
    baseline_server, baseline_port = start_server([sys.executable, __file__, "--serve-baseline"], env)
    options = [("grpc.max_receive_message_length", 64 * 1024 * 1024)]
    try:
        with grpc.insecure_channel(f"127.0.0.1:{port}", options) as channel, \
                grpc.insecure_channel(f"127.0.0.1:{baseline_port}", options) as baseline_channel:
            stub = meter_usage_pb2_grpc.MeterUsageServiceStub(channel)
            baseline_call = baseline_channel.unary_stream(
                BASELINE_METHOD,
                request_serializer=pb.StreamReadingsRequest.SerializeToString,
                response_deserializer=pb.StreamReadingsResponse.FromString,
            )
            report(args, stub, baseline_call, server.pid, database_url)
    finally:
        for process in (server, baseline_server):
            process.terminate()
            process.wait(timeout=20)
    print(f"\n(the whole run: {time.perf_counter() - began:.0f} s)")


def report(args, stub, baseline_call, server_pid: int, database_url: str) -> None:
    began = time.perf_counter()

    def progress(step: str) -> None:
        print(f"  {step} done at {time.perf_counter() - began:.0f} s", flush=True)

    month = ("2019-01-01T00:00:00Z", "2019-02-01T00:00:00Z")
    ref_median, ref_p99 = latency_ms(stub, "meterusage", *month, args.calls)
    gen_median, gen_p99 = latency_ms(stub, "gen-1m", "2019-03-01T00:00:00Z", "2019-04-01T00:00:00Z", args.calls)

    def full(meter: str, batch_size: int = 0):
        return pb.StreamReadingsRequest(meter=meter, start_time=ts(START), end_time=ts(END), batch_size=batch_size)

    def median_rate(call, request, runs: int) -> float:
        stream_rate(call, request)  # warm-up: connections, caches, the csv file load
        return statistics.median(stream_rate(call, request)[0] for _ in range(runs))

    progress("ListReadings latency")
    count = stream_rate(stub.StreamReadings, full("gen-1m"))[1]
    meters = ("gen-1m", "gen-1m-csv")
    rates, baselines, raw_fetches = {meter: [] for meter in meters}, {meter: [] for meter in meters}, []
    for meter in meters:
        stream_rate(stub.StreamReadings, full(meter))  # warm-up: connections, caches, the csv file load
    # Interleaved: the project's stream, the raw fetch and the baselines of each source, round after round.
    for _ in range(args.repeats):
        for meter in meters:
            rates[meter].append(stream_rate(stub.StreamReadings, full(meter))[0])
        raw_fetches.append(raw_fetch_rate(database_url, "gen-1m"))
    progress("streams and raw fetches, interleaved")
    for _ in range(max(1, args.repeats // 2)):
        for meter in meters:
            # A reading a message: its rate holds from the first message on, and the whole 1M took
            # 1.5 minutes a stream (more beside other work), which kept the PostgreSQL run from ending.
            baselines[meter].append(stream_rate(baseline_call, full(meter), args.baseline_readings)[0])
    rates = {meter: statistics.median(values) for meter, values in rates.items()}
    baselines = {meter: statistics.median(values) for meter, values in baselines.items()}
    raw_fetch = statistics.median(raw_fetches)
    times = np.concatenate([np.asarray(m.times) for m in stub.StreamReadings(full("gen-1m"))])
    values = np.concatenate([np.asarray(m.values) for m in stub.StreamReadings(full("gen-1m"))])
    limit_value = statistics.median(limit_rate(times, values, 16_384) for _ in range(args.repeats))
    progress("one-per-message baselines and the encode+decode limit")

    sizes = {
        size: {meter: median_rate(stub.StreamReadings, full(meter, size), 3) for meter in ("gen-1m", "gen-1m-csv")}
        for size in (256, 1024, 4096, 16_384, 50_000)
    }

    progress("batch sizes")
    before, peak, streamed = rss_growth(stub, server_pid, "gen-rss")
    progress("server RSS")

    print()
    store = "PostgreSQL" if database_url.startswith("postgres") else "SQLite"
    print(f"gRPC benchmark ({store}): {count:,} generated readings per stream, medians of {args.repeats} runs of the project interleaved across sources; the one-per-message baselines after them, "
          f"each over its first {args.baseline_readings or count:,} readings")
    print(row("measurement", "project", "baseline (same source, 1 per message)", "limit", "ratio", "goal"))
    print(row("---", "---", "---", "---", "---", "---"))
    print(row("ListReadings, reference month (2974), median / p99 ms", f"{ref_median:.2f} / {ref_p99:.2f}"))
    print(row("ListReadings, a month of gen-1m (2976), median / p99 ms", f"{gen_median:.2f} / {gen_p99:.2f}"))
    for meter, label in (("gen-1m", f"sql source, {store}"), ("gen-1m-csv", "csv source")):
        vs_baseline, vs_limit = rates[meter] / baselines[meter], rates[meter] / limit_value
        limits, ratios = f"{limit_value:,.0f} (encode+decode, no network)", f"{vs_baseline:.1f}x baseline, {vs_limit:.2f} of limit"
        met = vs_baseline >= GOAL_VS_BASELINE and vs_limit >= GOAL_VS_LIMIT
        goal = f">= {GOAL_VS_BASELINE}x, >= {GOAL_VS_LIMIT}"
        if meter == "gen-1m":
            vs_fetch = rates[meter] / raw_fetch
            limits += f"; {raw_fetch:,.0f} (raw driver fetch into numpy)"
            ratios += f", {vs_fetch:.2f} of raw fetch"
            met = met and vs_fetch >= GOAL_VS_RAW_FETCH
            goal += f", >= {GOAL_VS_RAW_FETCH} of raw fetch"
        print(row(
            f"StreamReadings ({label}), readings/s decoded by the client", f"{rates[meter]:,.0f}",
            f"{baselines[meter]:,.0f}", limits, ratios, f"{goal}: {'PASS' if met else 'MISS'}",
        ))
    growth = peak - before
    print(row(
        f"Server RSS streaming {streamed:,} readings (sql), MB", f"{before:.0f} -> {peak:.0f} (+{growth:.1f})",
        "", "", "", f"growth < {GOAL_RSS_MB}: {'PASS' if growth < GOAL_RSS_MB else 'MISS'}",
    ))
    print()
    print("StreamReadings batch size (readings per message) against readings/s:")
    print("| batch_size | sql source | csv source |")
    print("| --- | --- | --- |")
    for size, by_meter in sizes.items():
        print(f"| {size} | {by_meter['gen-1m']:,.0f} | {by_meter['gen-1m-csv']:,.0f} |")


if __name__ == "__main__":
    main()
