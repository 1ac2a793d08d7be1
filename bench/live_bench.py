"""Live readings benchmark: writes as meters send them, and watchers, on the servers a user runs.

Four tables, each measured beside its baseline in the same run, interleaved:

1. MQTT ingest: readings/s that `manage.py ingest_mqtt` commits from a backlog of QoS 1 messages
   on the broker (200,000 readings of 10 meters, 10 a message), against `manage.py import_readings`
   of the same readings written as CSV files (one a meter, imported by one process), into the same
   store, each a process as a user runs it: with their process start, and after it (from the
   first commit to the last, as the change log and the import runs record them). Fresh meters
   each round; rounds interleaved, the order alternating. Goal: >= 0.5 of import_readings. Shown
   beside them: import_readings of as many readings in one file of one meter (its best case),
   and a bare subscriber of the same messages (receiving only).
2. WriteReadings: readings/s of the same rows sent in unary batches to `grpcrunserver`, against
   `manage.py import_readings` of those rows as a file (the command a user runs). No goal; the
   ratio says what the per-call path costs.
3. Commit -> watcher latency: a writer sends 1,000 readings/s (WriteReadings batches over 20
   meters); a watcher of those meters takes each change; latency is its arrival minus the commit
   time the server stamps (taken before the commit, so the figure errs high). Goal: p99 < 250 ms.
4. Unary calls beside open watches: ListReadings (one day of the reference meter) p50/p99 with no
   watch open, then with 1,000 WatchReadings streams open on the same server (held by a separate
   client process), in alternating rounds. Goal: within 1.5x of the figure with none open.

PostgreSQL is what these are for (LISTEN/NOTIFY wakes the watchers); the bench makes its own
database on --postgres-url and drops it after. MQTT: a Mosquitto of its own on a free port, with
the settings of deploy/mosquitto.conf (a broker's default queue of 1,000 messages for an absent
client would drop most of a backlog), or the broker at --mqtt-url.

    .venv/bin/python bench/live_bench.py                      # about 8 minutes
    .venv/bin/python bench/live_bench.py --parts mqtt          # the MQTT table only (about 3 minutes)
    .venv/bin/python bench/live_bench.py --parts write watchers  # some tables only
"""
import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path
from urllib.parse import urlsplit

import grpc
import numpy as np
from common import REPO, start_server, ts  # puts the repository on sys.path

from grpc_api.gen.meterusage.v1 import meter_usage_pb2 as pb  # noqa: E402
from grpc_api.gen.meterusage.v1 import meter_usage_pb2_grpc  # noqa: E402

TOKEN = "live-bench-write"
WRITER = (("authorization", f"Bearer {TOKEN}"),)
DAY = ("2019-01-15T00:00:00Z", "2019-01-16T00:00:00Z")


def pct(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(len(ordered) * q))]


def manage(env: dict, *args: str, capture: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "manage.py", *args], cwd=REPO, env=env, check=True, capture_output=capture, text=True)


def times_of(start: int, count: int) -> list[str]:
    return [time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(start + 900 * i)) for i in range(count)]


# ---- 2. WriteReadings against import_readings --------------------------------------------


def write_rate(stub, meter: str, times: list[str], values: np.ndarray, batch: int) -> float:
    began = time.perf_counter()
    for i in range(0, len(times), batch):
        stub.WriteReadings(pb.WriteReadingsRequest(readings=[
            pb.ReadingInput(meter=meter, local_time=t, value=float(v))
            for t, v in zip(times[i:i + batch], values[i:i + batch])
        ]), metadata=WRITER, timeout=120)
    return len(times) / (time.perf_counter() - began)


def import_rate(env: dict, meter: str, path: Path, count: int) -> float:
    began = time.perf_counter()
    manage(env, "import_readings", str(path), "--meter", meter)
    return count / (time.perf_counter() - began)


def part_write(env: dict, stub, rounds: int, rows: int) -> list[str]:
    times = times_of(1546300800, rows)
    values = np.round(np.random.default_rng(1).uniform(0, 5, rows), 3)
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "rows.csv"
        path.write_text("time,meterusage\n" + "".join(f"{t},{v!r}\n" for t, v in zip(times, values.tolist())))
        results = {"write 1,000": [], "write 10,000": [], "import": []}
        for r in range(rounds):
            for batch in (1000, 10_000):
                meter = f"bench-write-{batch}-{r}"
                manage(env, "shell", "-c", f"from readings.models import Meter; Meter.objects.create(name={meter!r})")
                results[f"write {batch:,}"].append(write_rate(stub, meter, times, values, batch))
            results["import"].append(import_rate(env, f"bench-import-{r}", path, rows))
    limit = statistics.median(results["import"])
    lines = [
        f"| path ({rows:,} readings into an empty meter) | readings/s (median of {rounds}) | of import_readings |",
        "| --- | --- | --- |",
    ]
    for name, rates in results.items():
        label = "`import_readings` of the same rows as a file" if name == "import" else f"WriteReadings, batches of {name.split()[1]}"
        lines.append(f"| {label} | {statistics.median(rates):,.0f} | {statistics.median(rates) / limit:.2f} |")
    return lines


# ---- 3. Commit -> watcher latency ---------------------------------------------------------


def part_latency(env: dict, stub, port: int, seconds: float, rate: int) -> list[str]:
    meters = [f"bench-watch-{i}" for i in range(20)]
    manage(env, "shell", "-c", "from readings.models import Meter; "
           f"[Meter.objects.get_or_create(name=n) for n in {meters!r}]")
    latencies: list[float] = []
    received = [0]
    stop = threading.Event()
    watch = stub.WatchReadings(pb.WatchReadingsRequest(meters=meters))

    def read():
        try:
            for message in watch:
                now = time.time()
                for change in message.changes:
                    latencies.append((now - change.commit_time.ToNanoseconds() / 1e9) * 1000)
                received[0] += len(message.changes)
        except grpc.RpcError:
            pass

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    time.sleep(1)
    sent, batch_every = 0, 0.1
    per_batch = max(1, int(rate * batch_every))
    start = 1546300800
    began = time.monotonic()
    tick = began
    while time.monotonic() - began < seconds:
        readings = []
        for _ in range(per_batch):
            meter = meters[sent % len(meters)]
            readings.append(pb.ReadingInput(meter=meter, time=ts(time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(start + 900 * (sent // len(meters))))), value=1.0))
            sent += 1
        stub.WriteReadings(pb.WriteReadingsRequest(readings=readings), metadata=WRITER)
        tick += batch_every
        time.sleep(max(0.0, tick - time.monotonic()))
    deadline = time.monotonic() + 10
    while received[0] < sent and time.monotonic() < deadline:
        time.sleep(0.05)
    watch.cancel()
    stop.set()
    achieved = sent / seconds
    p50, p99 = statistics.median(latencies), pct(latencies, 0.99)
    # Every change must have arrived: a latency of the ones that did says nothing of the rest.
    verdict = "pass" if p99 < 250 and received[0] == sent else "MISS"
    return [
        "| writes | readings sent | received by the watcher | p50 ms | p99 ms | goal p99 < 250 ms |",
        "| --- | --- | --- | --- | --- | --- |",
        f"| {achieved:,.0f} readings/s in batches of {per_batch} every {batch_every * 1000:.0f} ms, 20 meters | {sent:,} | "
        f"{received[0]:,} | {p50:.1f} | {p99:.1f} | {verdict} |",
    ]


# ---- 4. ListReadings beside 1,000 open watches --------------------------------------------

HOLDER = r'''
import asyncio, sys
import grpc
sys.path.insert(0, sys.argv[1])
from grpc_api.gen.meterusage.v1 import meter_usage_pb2 as pb, meter_usage_pb2_grpc

async def main(port, count, meters):
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        stub = meter_usage_pb2_grpc.MeterUsageServiceStub(channel)
        calls = [stub.WatchReadings(pb.WatchReadingsRequest(meters=[meters[i % len(meters)]])) for i in range(count)]
        await asyncio.gather(*(call.read() for call in calls))  # every watch has caught up
        print("open", flush=True)
        async def drain(call):
            try:
                async for _ in call:
                    pass
            except grpc.RpcError:
                pass
        drains = [asyncio.create_task(drain(call)) for call in calls]
        await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)
        for call in calls:
            call.cancel()
        await asyncio.gather(*drains)

asyncio.run(main(int(sys.argv[2]), int(sys.argv[3]), sys.argv[4].split(",")))
'''


def part_watchers(env: dict, stub, port: int, rounds: int, calls: int, watchers: int) -> list[str]:
    meters = [f"bench-watch-{i}" for i in range(20)]
    manage(env, "shell", "-c", "from readings.models import Meter; "
           f"[Meter.objects.get_or_create(name=n) for n in {meters!r}]")
    request = pb.ListReadingsRequest(meter="meterusage", start_time=ts(DAY[0]), end_time=ts(DAY[1]), page_size=1000)

    def measure() -> list[float]:
        for _ in range(10):
            stub.ListReadings(request)
        samples = []
        for _ in range(calls):
            began = time.perf_counter()
            stub.ListReadings(request)
            samples.append((time.perf_counter() - began) * 1000)
        return samples

    none_open, many_open, open_seconds = [], [], []
    for _ in range(rounds):
        none_open += measure()
        began = time.perf_counter()
        holder = subprocess.Popen(
            [sys.executable, "-c", HOLDER, str(REPO), str(port), str(watchers), ",".join(meters)],
            cwd=REPO, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
        )
        line = holder.stdout.readline()
        if line.strip() != "open":
            holder.kill()
            raise RuntimeError(f"the watch holder failed: {line!r}")
        open_seconds.append(time.perf_counter() - began)
        many_open += measure()
        holder.stdin.write("\n")
        holder.stdin.flush()
        holder.wait(timeout=60)
    p50_none, p99_none = statistics.median(none_open), pct(none_open, 0.99)
    p50_many, p99_many = statistics.median(many_open), pct(many_open, 0.99)
    ok = p50_many <= 1.5 * p50_none and p99_many <= 1.5 * p99_none
    return [
        f"| ListReadings, one day (96 readings) | p50 ms | p99 ms | ratio p50 / p99 | goal <= 1.5x |",
        "| --- | --- | --- | --- | --- |",
        f"| no watch open ({len(none_open)} calls) | {p50_none:.2f} | {p99_none:.2f} | | |",
        f"| {watchers:,} watches open ({len(many_open)} calls) | {p50_many:.2f} | {p99_many:.2f} | "
        f"{p50_many / p50_none:.2f} / {p99_many / p99_none:.2f} | {'pass' if ok else 'MISS'} |",
        f"| (opening {watchers:,} watches until each had caught up: median {statistics.median(open_seconds):.1f} s) | | | | |",
    ]


# ---- 1. MQTT ingest against import_readings of the same readings ---------------------------


def broker_of(url: str) -> tuple[str, int]:
    parts = urlsplit(url)
    return parts.hostname, parts.port or 1883


def backlog_readings(meters: list[str], readings: int) -> dict[str, tuple[list[str], list[float]]]:
    """`readings` readings in all, the same number for each meter, 15 minutes apart from 2019:
    times as a file holds them (naive, the meters' zone being UTC), values with three decimals."""
    per_meter = readings // len(meters)
    times = np.datetime_as_string(np.datetime64("2019-01-01T00:00:00") + np.arange(per_meter) * np.timedelta64(900, "s"), unit="s")
    times = [t.replace("T", " ") for t in times.tolist()]
    rng = np.random.default_rng(7)
    return {meter: (times, np.round(rng.uniform(0, 5, per_meter), 3).tolist()) for meter in meters}


def backlog_messages(rows: dict[str, tuple[list[str], list[float]]], per_message: int) -> list[tuple[str, bytes]]:
    """(meter, payload) of each message: `per_message` readings of one meter, the meters in turn,
    as a fleet reporting at once would publish them."""
    messages = []
    per_meter = len(next(iter(rows.values()))[0])
    for first in range(0, per_meter, per_message):
        for meter, (times, values) in rows.items():
            readings = [{"time": t, "value": v} for t, v in zip(times[first:first + per_message], values[first:first + per_message])]
            messages.append((meter, json.dumps({"readings": readings}).encode()))
    return messages


def publish_backlog(mqtt_url: str, topic_root: str, messages: list[tuple[str, bytes]]) -> None:
    """Publish the messages (QoS 1) to sessions that are not connected."""
    import paho.mqtt.client as mqtt

    host, port = broker_of(mqtt_url)
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"bench-pub-{uuid.uuid4().hex[:8]}")
    client.max_inflight_messages_set(1000)
    client.connect(host, port)
    client.loop_start()
    infos = [client.publish(f"{topic_root}/meters/{meter}/readings", payload, qos=1) for meter, payload in messages]
    for info in infos:
        info.wait_for_publish(60)
    client.loop_stop()
    client.disconnect()


def open_session(mqtt_url: str, client_id: str, topic: str) -> None:
    """Make the persistent session ingest_mqtt resumes (MQTT 5, QoS 1), so that the broker keeps
    what is published before the consumer starts."""
    import paho.mqtt.client as mqtt
    from paho.mqtt.packettypes import PacketTypes
    from paho.mqtt.properties import Properties
    from paho.mqtt.subscribeoptions import SubscribeOptions

    host, port = broker_of(mqtt_url)
    subscribed = threading.Event()
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv5)
    client.on_subscribe = lambda *_: subscribed.set()
    properties = Properties(PacketTypes.CONNECT)
    properties.SessionExpiryInterval = 3600
    client.connect(host, port, clean_start=False, properties=properties)
    client.loop_start()
    client.subscribe(topic, options=SubscribeOptions(qos=1))
    if not subscribed.wait(10):
        raise RuntimeError(f"could not subscribe {client_id} to {topic}")
    client.loop_stop()
    client.disconnect()


def bare_rate(mqtt_url: str, messages: list[tuple[str, bytes]], readings: int) -> float:
    """Readings/s a subscriber that only counts messages (QoS 1, persistent session) receives from
    a backlog of the same messages (no process start)."""
    import paho.mqtt.client as mqtt

    host, port = broker_of(mqtt_url)
    root = f"bench/{uuid.uuid4().hex[:8]}"
    got = [0]
    done = threading.Event()
    expected = len(messages)

    def on_message(client, userdata, message):
        got[0] += 1
        if got[0] >= expected:
            done.set()

    bare = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"bench-bare-{uuid.uuid4().hex[:8]}", clean_session=False)
    bare.on_message = on_message
    bare.connect(host, port)
    bare.subscribe(f"{root}/meters/+/readings", qos=1)
    bare.loop_start()
    time.sleep(0.5)
    bare.loop_stop()
    bare.disconnect()
    publish_backlog(mqtt_url, root, messages)
    began = time.perf_counter()
    bare.reconnect()
    bare.loop_start()
    if not done.wait(300):
        raise RuntimeError(f"the bare subscriber received {got[0]:,} of {expected:,} messages")
    rate = readings / (time.perf_counter() - began)
    bare.loop_stop()
    bare.disconnect()
    return rate


def consumer_rate(env: dict, mqtt_url: str, messages: list[tuple[str, bytes]], prefix: str, readings: int) -> tuple[float, float]:
    """Readings/s of `manage.py ingest_mqtt` draining a backlog of the messages: from the start of
    its process until the last reading is committed (the meters' reading counts, kept in the
    write's transaction, say so); and after its start: the readings of every batch but the first
    over the time from the first batch's commit stamp to the last's (the change log's)."""
    import psycopg

    root = f"bench/{uuid.uuid4().hex[:8]}"
    client_id = f"bench-ingest-{uuid.uuid4().hex[:8]}"
    topic = f"{root}/meters/+/readings"
    open_session(mqtt_url, client_id, topic)
    publish_backlog(mqtt_url, root, messages)
    consumer_env = {**env, "MQTT_URL": mqtt_url, "MQTT_TOPIC": topic, "MQTT_CLIENT_ID": client_id}
    with psycopg.connect(env["DATABASE_URL"], autocommit=True) as db:
        def stored() -> int:
            return db.execute(
                "SELECT COALESCE(SUM(reading_count), 0) FROM readings_meter WHERE name LIKE %s", [f"{prefix}%"]
            ).fetchone()[0]

        began = time.perf_counter()
        consumer = subprocess.Popen([sys.executable, "manage.py", "ingest_mqtt"], cwd=REPO, env=consumer_env,
                                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            while stored() < readings:
                if consumer.poll() is not None:
                    raise RuntimeError(f"ingest_mqtt exited with {consumer.returncode}, {stored():,} of {readings:,} readings stored")
                if time.perf_counter() - began > 600:
                    raise RuntimeError(f"ingest_mqtt stored {stored():,} of {readings:,} readings in 600 s")
                time.sleep(0.02)
            rate = readings / (time.perf_counter() - began)
        finally:
            consumer.terminate()
            consumer.wait(30)
        later, seconds = db.execute(
            "WITH c AS (SELECT c.committed_at FROM readings_readingchange c JOIN readings_meter m ON m.id = c.meter_id "
            "WHERE m.name LIKE %s) SELECT COUNT(*) FILTER (WHERE committed_at > (SELECT MIN(committed_at) FROM c)), "
            "EXTRACT(EPOCH FROM MAX(committed_at) - MIN(committed_at)) FROM c", [f"{prefix}%"],
        ).fetchone()
    return rate, later / float(seconds)


def import_files_rate(env: dict, rows: dict[str, tuple[list[str], list[float]]], prefix: str, readings: int) -> tuple[float, float]:
    """Readings/s of `manage.py import_readings` of the same readings, a CSV file a meter, all in
    one process, as a user imports them: its start included, and after it (from the first import
    run's start to the last one's end, as the runs record them)."""
    import psycopg

    with tempfile.TemporaryDirectory() as folder:
        paths = []
        for i, (times, values) in enumerate(rows.values()):
            path = Path(folder) / f"{prefix}{i}.csv"  # the file's name is the meter's
            path.write_text("time,meterusage\n" + "".join(f"{t},{v!r}\n" for t, v in zip(times, values)))
            paths.append(str(path))
        began = time.perf_counter()
        manage(env, "import_readings", *paths)
        rate = readings / (time.perf_counter() - began)
    with psycopg.connect(env["DATABASE_URL"], autocommit=True) as db:
        seconds = db.execute(
            "SELECT EXTRACT(EPOCH FROM MAX(finished_at) - MIN(started_at)) FROM readings_importrun WHERE meter_name LIKE %s",
            [f"{prefix}%"],
        ).fetchone()[0]
    return rate, readings / float(seconds)


def import_one_file_rate(env: dict, rows: dict[str, tuple[list[str], list[float]]], meter: str, readings: int) -> tuple[float, float]:
    """The same for as many readings in one file of one meter (the import's best case: one run,
    one transaction)."""
    times = backlog_readings([meter], readings)[meter][0]
    values = [v for _, values in rows.values() for v in values]
    return import_files_rate(env, {meter: (times, values)}, meter, readings)


def part_mqtt(env: dict, mqtt_url: str, rounds: int, readings: int, meter_count: int, per_message: int) -> list[str]:
    results = {"ingest": [], "import": [], "one file": []}
    bare = []
    for r in range(rounds):
        # Fresh meters each round, for both: each writes into meters with no readings yet.
        ingest_meters = [f"bench-mqtt-{r}-{i}" for i in range(meter_count)]
        manage(env, "shell", "-c", "from readings.models import Meter; "
               f"[Meter.objects.get_or_create(name=n) for n in {ingest_meters!r}]")
        rows = backlog_readings(ingest_meters, readings)
        messages = backlog_messages(rows, per_message)
        total = sum(len(times) for times, _ in rows.values())
        # Which goes first alternates from round to round.
        runs = [
            ("ingest", lambda: consumer_rate(env, mqtt_url, messages, f"bench-mqtt-{r}-", total)),
            ("import", lambda: import_files_rate(env, rows, f"bench-import-{r}-", total)),
            ("one file", lambda: import_one_file_rate(env, rows, f"bench-import-one-{r}", total)),
        ]
        for name, run in runs if r % 2 == 0 else runs[::-1]:
            results[name].append(run())
        bare.append(bare_rate(mqtt_url, messages, total))
        print(f"   round {r + 1}: " + ", ".join(
            f"{name} {rates[-1][0]:,.0f} ({rates[-1][1]:,.0f} after start)" for name, rates in results.items()
        ) + f", bare subscriber {bare[-1]:,.0f}", flush=True)
    (ingest, ingest_after), (limit, limit_after), (one, one_after) = (
        tuple(statistics.median(rate[i] for rate in results[name]) for i in (0, 1)) for name in ("ingest", "import", "one file")
    )

    def ratio(name: str, i: int) -> float:
        """The median of the rounds' ratios to import_readings: each round's two figures were taken
        one after the other, so the machine's other load weighs on both alike."""
        return statistics.median(mine[i] / base[i] for mine, base in zip(results[name], results["import"]))

    verdict = "pass" if ratio("ingest", 0) >= 0.5 else "MISS"
    after_verdict = "pass" if ratio("ingest", 1) >= 0.5 else "MISS"
    bare_median = statistics.median(bare)
    per_meter = total // meter_count
    return [
        f"| {total:,} readings ({meter_count} meters x {per_meter:,}), {per_message} a message, a backlog drained into "
        f"PostgreSQL (medians of {rounds} interleaved rounds; ratios: the median of the rounds' ratios) "
        "| readings/s, process start included | of import_readings | readings/s after the process start | of import_readings |",
        "| --- | --- | --- | --- | --- |",
        f"| `manage.py ingest_mqtt`, until every reading is committed | {ingest:,.0f} | {ratio('ingest', 0):.2f} | "
        f"{ingest_after:,.0f} | {ratio('ingest', 1):.2f} |",
        f"| `manage.py import_readings` of the same readings, a CSV file a meter, one process | {limit:,.0f} | 1.00 | "
        f"{limit_after:,.0f} | 1.00 |",
        f"| (`import_readings` of as many readings in one file of one meter) | {one:,.0f} | {ratio('one file', 0):.2f} | "
        f"{one_after:,.0f} | {ratio('one file', 1):.2f} |",
        f"| (a bare subscriber of the same messages, QoS 1, receives only) | | | {bare_median:,.0f} | {bare_median / limit_after:.2f} |",
        f"| goal: ingest_mqtt >= 0.5 of import_readings | | {verdict} | | {after_verdict} |",
    ]


def start_broker() -> tuple[subprocess.Popen, str]:
    """Mosquitto on a free loopback port, configured as deploy/mosquitto.conf configures it."""
    import shutil

    from testing.influxd import free_port

    port = free_port()
    folder = Path(tempfile.mkdtemp(prefix="live-bench-mqtt-"))
    settings = [line for line in (REPO / "deploy/mosquitto.conf").read_text().splitlines()
                if line.strip() and not line.startswith(("#", "listener", "persistence", "log_dest"))]
    config = folder / "mosquitto.conf"
    config.write_text(f"listener {port} 127.0.0.1\npersistence false\n" + "\n".join(settings) + "\n")
    binary = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
    process = subprocess.Popen([binary, "-c", str(config)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(0.5)
    return process, f"mqtt://127.0.0.1:{port}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--reference", default=os.environ.get("METERUSAGE_CSV", str(REPO.parent / "shared/data/meterusage.csv")))
    parser.add_argument("--postgres-url", default="postgres://postgres@127.0.0.1:5432/postgres")
    parser.add_argument("--mqtt-url", help="A broker to use (default: one of the bench's own).")
    parser.add_argument("--parts", nargs="+", default=["mqtt", "write", "latency", "watchers"],
                        choices=["mqtt", "write", "latency", "watchers"])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--watchers", type=int, default=1000)
    parser.add_argument("--mqtt-readings", type=int, default=200_000, help="Readings of the MQTT backlog (default 200,000).")
    parser.add_argument("--mqtt-meters", type=int, default=10, help="Meters they are spread over (default 10).")
    parser.add_argument("--per-message", type=int, default=10, help="Readings per MQTT message (default 10).")
    args = parser.parse_args()

    import psycopg

    database = f"live_bench_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(args.postgres_url, autocommit=True) as admin:
        admin.execute(f"CREATE DATABASE {database}")
    base = args.postgres_url.rsplit("/", 1)[0]
    env = {**os.environ, "DATABASE_URL": f"{base}/{database}", "DJANGO_DEBUG": "false",
           "DJANGO_SECRET_KEY": "live-bench-only", "DJANGO_LOG_LEVEL": "WARNING", "PYTHONUNBUFFERED": "1",
           "GRPC_WRITE_TOKENS": TOKEN, "API_CACHE_SECONDS": "0"}
    server = broker = None
    tables = []
    try:
        if "mqtt" in args.parts and not args.mqtt_url:
            broker, args.mqtt_url = start_broker()
        manage(env, "migrate", "--verbosity", "0")
        manage(env, "import_readings", args.reference)
        for part in args.parts:
            print(f"== {part} ...", flush=True)
            if part == "mqtt":
                lines = part_mqtt(env, args.mqtt_url, args.rounds, args.mqtt_readings, args.mqtt_meters, args.per_message)
            else:
                if server is None:  # the MQTT table runs without a gRPC server beside it
                    server, port = start_server([sys.executable, "manage.py", "grpcrunserver", "127.0.0.1:0"], env)
                    channel = grpc.insecure_channel(f"127.0.0.1:{port}")
                    stub = meter_usage_pb2_grpc.MeterUsageServiceStub(channel)
                if part == "write":
                    lines = part_write(env, stub, args.rounds, rows=100_000)
                elif part == "latency":
                    lines = part_latency(env, stub, port, seconds=20, rate=1000)
                else:
                    lines = part_watchers(env, stub, port, args.rounds, calls=300, watchers=args.watchers)
            print("\n".join(lines), flush=True)
            tables.append(lines)
    finally:
        if server is not None:
            channel.close()
        for process in (server, broker):
            if process is not None:
                process.terminate()
                process.wait(timeout=30)
        with psycopg.connect(args.postgres_url, autocommit=True) as admin:
            admin.execute(f"DROP DATABASE IF EXISTS {database} WITH (FORCE)")
    print("\nPostgreSQL; grpcrunserver with 10 worker threads (not running during the MQTT table), loopback; "
          "clients on the same 2 cores.")
    for lines in tables:
        print()
        print("\n".join(lines))


if __name__ == "__main__":
    main()
