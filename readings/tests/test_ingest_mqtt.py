"""`manage.py ingest_mqtt` as deployed: a real subprocess on the test database, a real Mosquitto,
messages published with QoS 1. What is published is counted here, independently of the project's
reader, and compared with what the store holds."""
import json
import os
import random
import re
import signal
import sqlite3
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from urllib.parse import quote

import paho.mqtt.client as mqtt
import pytest
from django.db import connections

from readings.models import Meter, RejectedMessage, Write
from testing.helpers import REPO, file_reason, wait_for
from testing.influxd import free_port
from testing.servers import ReconnectingWatcher, start_grpc_server_on, start_process, stop_process

pytestmark = pytest.mark.django_db

RUN = uuid.uuid4().hex[:8]  # topics and client ids of this run only
ACCEPTANCE_METERS = [f"acc-{i:03d}" for i in range(1, 51)]
OTHER_METERS = [f"drain-{i:03d}" for i in range(1, 6)] + ["logged", "held", "house-7-main", "house-8-main"]
FIRST_SLOT = datetime(2020, 1, 1)


@dataclass
class Store:
    """The database the consumer subprocess writes to: the test database on PostgreSQL, a file of
    its own on SQLite (the test database there is in memory). Read with plain SQL."""

    env: dict
    url: str

    def query(self, sql: str) -> list[tuple]:
        if self.url.startswith("sqlite"):
            with sqlite3.connect(self.url.removeprefix("sqlite:///")) as db:
                return db.execute(sql).fetchall()
        import psycopg

        with psycopg.connect(self.url, autocommit=True) as db:
            return db.execute(sql).fetchall()

    def readings_by_meter(self, prefix: str) -> dict[str, tuple[int, float]]:
        rows = self.query(
            "SELECT m.name, COUNT(*), SUM(r.value) FROM readings_reading r JOIN readings_meter m ON m.id = r.meter_id "
            f"WHERE m.name LIKE '{prefix}%' GROUP BY m.name"
        )
        return {name: (count, total) for name, count, total in rows}

    def reading_count(self, prefix: str) -> int:
        return sum(count for count, _ in self.readings_by_meter(prefix).values())

    def rejections(self, topic_prefix: str) -> list[tuple[str, str, str]]:
        return self.query(
            "SELECT topic, payload_excerpt, reason FROM readings_rejectedmessage "
            f"WHERE topic LIKE '{topic_prefix}%' ORDER BY id"
        )


@pytest.fixture(scope="module")
def store(django_db_setup, django_db_blocker, tmp_path_factory):
    settings_dict = connections["default"].settings_dict
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "DJANGO_DEBUG": "false", "INGEST_CREATE_METERS": "false"}
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    postgres = connections["default"].vendor == "postgresql"
    if postgres:
        s = settings_dict
        credentials = quote(s["USER"] or "") + (f":{quote(s['PASSWORD'])}" if s["PASSWORD"] else "")
        url = f"postgres://{credentials}@{s['HOST'] or 'localhost'}:{s['PORT'] or 5432}/{s['NAME']}"
    else:
        url = f"sqlite:///{tmp_path_factory.mktemp('ingest') / 'db.sqlite3'}"
    env["DATABASE_URL"] = url
    names = ACCEPTANCE_METERS + OTHER_METERS
    code = "import os; from readings.models import Meter; Meter.objects.bulk_create([Meter(name=n) for n in os.environ['NAMES'].split()])"
    with django_db_blocker.unblock():
        if not postgres:
            subprocess.run([sys.executable, "manage.py", "migrate", "-v", "0"], cwd=REPO, env=env, check=True, capture_output=True)
        subprocess.run(
            [sys.executable, "manage.py", "shell", "-c", code], cwd=REPO, env={**env, "NAMES": " ".join(names)},
            check=True, capture_output=True,
        )
        yield Store(env, url)
        if postgres:  # committed data in the test database, removed as served_data removes its own
            Meter.objects.filter(name__startswith="sim").delete()
            Meter.objects.filter(name__in=names).delete()
            RejectedMessage.objects.all().delete()
            Write.objects.all().delete()


def start_consumer(store: Store, broker, topic: str, client_id: str, log: Path, *extra: str, env=None) -> subprocess.Popen:
    """`manage.py ingest_mqtt` once it has subscribed (a new session must subscribe before
    anything published is kept for it)."""
    process = start_process(
        [sys.executable, "manage.py", "ingest_mqtt", "--url", broker.url, "--topic", topic, "--client-id", client_id, *extra],
        env or store.env, log,
    )

    def subscribed():
        if process.poll() is not None:
            pytest.fail(f"ingest_mqtt exited with {process.returncode}: {log.read_text()[-3000:]}")
        return "subscribed to" in log.read_text()

    wait_for(subscribed, 60)
    return process


class Publisher:
    """A plain paho client publishing with QoS 1; `wait` returns once the broker has every message."""

    def __init__(self, broker):
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"pub-{uuid.uuid4().hex[:8]}")
        self.client.max_inflight_messages_set(1000)
        self.client.connect("127.0.0.1", broker.port)
        self.client.loop_start()
        self.sent = []

    def publish(self, topic: str, payload, retain: bool = False) -> None:
        body = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
        self.sent.append(self.client.publish(topic, body, qos=1, retain=retain))

    def wait(self) -> None:
        for info in self.sent:
            info.wait_for_publish(timeout=60)
            assert info.is_published()
        self.client.disconnect()
        self.client.loop_stop()


def slot_time(slot: int, utc: bool = False) -> str:
    moment = FIRST_SLOT + timedelta(minutes=15 * slot)
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ" if utc else "%Y-%m-%d %H:%M:%S")


def test_100000_readings_survive_two_kills_and_bad_messages_are_recorded_once(store, mqtt_broker, tmp_path):
    topic_root = f"{RUN}-acc/meterusage/v1/meters"
    topic_filter = f"{topic_root}/+/readings"
    client_id = f"ingest-{RUN}-acc"
    rng = random.Random(7)
    per_message, messages_per_meter = 5, 400

    good, expected = [], {name: [0, 0] for name in ACCEPTANCE_METERS}  # [count, sum in cents]
    for k in range(messages_per_meter):
        for index, name in enumerate(ACCEPTANCE_METERS):
            readings = []
            for j in range(per_message):
                cents = rng.randrange(0, 100_000)
                readings.append({"time": slot_time(k * per_message + j, utc=k % 2 == 1), "value": cents / 100})
                expected[name][0] += 1
                expected[name][1] += cents
            if k == 0 and index < 10:  # a reading without a value is skipped, not a rejection
                readings.append({"time": slot_time(10_000 + index), "value": None})
            good.append((f"{topic_root}/{name}/readings", {"readings": readings}))

    bad = []
    for i in range(4):
        bad.append((f"{topic_root}/acc-001/readings", f"not json {i} {{".encode(), "payload is not JSON"))
        bad.append((f"{topic_root}/acc-9{i:02d}/readings", {"time": slot_time(i), "value": 1.5},
                    f"no meter named 'acc-9{i:02d}'"))
        time_text = f"2020-13-0{i + 1} 00:00:00"
        bad.append((f"{topic_root}/acc-002/readings", {"readings": [{"time": slot_time(20_000 + i), "value": 1}, {"time": time_text, "value": 2}]},
                    f"reading 2: {file_reason(time_text, '2')}"))
        value_text = f"1,{i + 5}"
        bad.append((f"{topic_root}/acc-003/readings", {"time": slot_time(30_000 + i), "value": value_text},
                    f"reading 1: {file_reason(slot_time(0), value_text)}"))
    bad += [
        (f"{topic_root}/acc-004/readings", [1, 2, 3], "payload is a JSON array"),
        (f"{topic_root}/acc-004/readings", {"readings": {"time": slot_time(0), "value": 1}}, "readings is a JSON object, not an array"),
        (f"{topic_root}/acc-004/readings", {"reading": 1}, "payload is not an object with time and value"),
        (f"{topic_root}/acc-004/readings", {"readings": [{"t": slot_time(0), "v": 1}]}, "readings[0] is not an object with time and value"),
    ]
    stream = list(good)
    for item in bad:
        stream.insert(rng.randrange(len(stream)), item[:2])
    total = sum(count for count, _ in expected.values())
    assert (total, len(ACCEPTANCE_METERS), len(bad)) == (100_000, 50, 20)

    logs = iter(tmp_path / f"ingest-{n}.log" for n in range(10))
    consumer = start_consumer(store, mqtt_broker, topic_filter, client_id, next(logs))
    # A watcher of every meter, through a gRPC server of the same store that is restarted at each
    # kill of the consumer (gracefully, then killed too); it resumes with its last token.
    grpc_port = free_port()
    grpc_logs = iter(tmp_path / f"grpc-{n}.log" for n in range(10))
    grpc_server, _ = start_grpc_server_on(store.env, next(grpc_logs), grpc_port)
    watcher = ReconnectingWatcher(grpc_port, ACCEPTANCE_METERS)
    watcher.start()

    def restart_grpc_server(how: signal.Signals):
        nonlocal grpc_server
        grpc_server.send_signal(how)
        grpc_server.wait(30)
        grpc_server, _ = start_grpc_server_on(store.env, next(grpc_logs), grpc_port)

    kills = 0
    publisher = Publisher(mqtt_broker)
    try:
        # Published at about 2000 messages a second, so that both kills fall while messages arrive.
        started = time.monotonic()
        kill_at = [total * 25 // 100, total * 60 // 100]
        for n, (topic, payload) in enumerate(stream):
            publisher.publish(topic, payload)
            if n % 200 == 0:
                lead = n / 2000 - (time.monotonic() - started)
                if lead > 0:
                    time.sleep(lead)
                if kill_at and store.reading_count("acc-") >= kill_at[0]:
                    consumer.send_signal(signal.SIGKILL)
                    consumer.wait()
                    kills += 1
                    kill_at.pop(0)
                    print(f"killed while publishing, after {n} of {len(stream)} messages")
                    consumer = start_consumer(store, mqtt_broker, topic_filter, client_id, next(logs))
                    restart_grpc_server(signal.SIGTERM if kills == 1 else signal.SIGKILL)
        publisher.wait()
        for threshold in kill_at:  # when the consumer was faster than the publisher
            wait_for(lambda: store.reading_count("acc-") >= threshold, 90)
            consumer.send_signal(signal.SIGKILL)
            consumer.wait()
            kills += 1
            consumer = start_consumer(store, mqtt_broker, topic_filter, client_id, next(logs))
            restart_grpc_server(signal.SIGTERM if kills == 1 else signal.SIGKILL)

        wait_for(lambda: store.reading_count("acc-") == total and len(store.rejections(RUN + "-acc")) >= len(bad), 120)
        consumer.send_signal(signal.SIGTERM)
        assert consumer.wait(timeout=30) == 0
        wait_for(lambda: len(watcher.received) >= total, 120)
        time.sleep(1)  # a change sent twice would show by now
    finally:
        watcher.stopping.set()
        stop_process(consumer)
        stop_process(grpc_server)

    assert kills == 2
    # The restarted consumers took over the session, and with it what the killed ones had not acknowledged.
    assert all("(session resumed)" in (tmp_path / f"ingest-{n}.log").read_text() for n in (1, 2))
    stored = store.readings_by_meter("acc-")
    assert {name: count for name, (count, _) in stored.items()} == {name: count for name, (count, _) in expected.items()}
    assert {name: round(value * 100) for name, (_, value) in stored.items()} == {name: cents for name, (_, cents) in expected.items()}

    # The watcher got every committed reading exactly once, across the restarts.
    received = watcher.received
    assert len(received) == total and len(set(received)) == total
    assert watcher.reconnects >= 2
    watched = {name: [0, 0.0] for name in ACCEPTANCE_METERS}
    for meter, _, value, replaced in received:
        assert not replaced
        watched[meter][0] += 1
        watched[meter][1] += value
    assert {name: (count, round(value * 100)) for name, (count, value) in watched.items()} == {
        name: (count, cents) for name, (count, cents) in expected.items()
    }

    recorded = store.rejections(RUN + "-acc")
    assert len(recorded) == len(bad)  # each once, though some were delivered again after a kill
    published = {(topic, (payload if isinstance(payload, bytes) else json.dumps(payload).encode()).decode()): reason
                 for topic, payload, reason in bad}
    assert {(topic, excerpt) for topic, excerpt, _ in recorded} == set(published)
    for topic, excerpt, reason in recorded:
        assert published[(topic, excerpt)] in reason, (excerpt, reason)


def test_sigterm_commits_what_is_in_hand_and_exits_0(store, mqtt_broker, tmp_path):
    topic_root = f"{RUN}-drain/meters"
    client_id = f"ingest-{RUN}-drain"
    meters = [name for name in OTHER_METERS if name.startswith("drain-")]
    publisher = Publisher(mqtt_broker)
    consumer = start_consumer(store, mqtt_broker, f"{topic_root}/+/readings", client_id, tmp_path / "first.log", "--batch", "20")
    try:
        for k in range(400):
            for name in meters:
                publisher.publish(f"{topic_root}/{name}/readings",
                                  {"readings": [{"time": slot_time(k * 5 + j), "value": j} for j in range(5)]})
        publisher.wait()
        wait_for(lambda: store.reading_count("drain-") > 0, 60)
        consumer.send_signal(signal.SIGTERM)
        assert consumer.wait(timeout=30) == 0
    finally:
        stop_process(consumer)
    log = (tmp_path / "first.log").read_text()
    *_, counts, stopped = log.splitlines()
    assert re.search(r"ingest: \d+ messages", counts), log[-2000:]
    assert stopped == "Stopped: every message received is committed and acknowledged."

    # What the first consumer left is delivered to the next one: nothing is lost.
    consumer = start_consumer(store, mqtt_broker, f"{topic_root}/+/readings", client_id, tmp_path / "second.log")
    try:
        wait_for(lambda: store.reading_count("drain-") == 400 * 5 * len(meters), 90)
    finally:
        stop_process(consumer)
    assert consumer.returncode == 0


LOG_LINE = re.compile(
    r"INFO readings\.ingest ingest: (\d+) messages, (\d+) readings \((\d+) inserted, (\d+) updated, "
    r"(\d+) unchanged, (\d+) skipped\), (\d+) rejected; lag \d+\.\d\d s; \d+ waiting$"
)


def test_counts_are_logged_and_the_heartbeat_file_is_kept(store, mqtt_broker, tmp_path):
    topic_root = f"{RUN}-log/meters"
    heartbeat = tmp_path / "heartbeat"
    log = tmp_path / "ingest.log"
    consumer = start_consumer(
        store, mqtt_broker, f"{topic_root}/+/readings", f"ingest-{RUN}-log", log, "--log-every", "0.3",
        env={**store.env, "INGEST_HEARTBEAT_FILE": str(heartbeat)},
    )
    health = [sys.executable, "scripts/healthcheck.py"]
    health_env = {**os.environ, "ROLE": "ingest", "INGEST_HEARTBEAT_FILE": str(heartbeat)}
    try:
        publisher = Publisher(mqtt_broker)
        publisher.publish(f"{topic_root}/logged/readings", {"time": "2020-01-01 00:00:00", "value": 1.25})
        publisher.publish(f"{topic_root}/logged/readings", {"readings": [
            {"time": "2020-01-01 00:15:00", "value": 2}, {"time": "2020-01-01 00:30:00", "value": None},
        ]})
        publisher.publish(f"{topic_root}/logged/readings", b"\xff\xfe")
        publisher.wait()
        wait_for(lambda: store.reading_count("logged") == 2 and store.rejections(f"{RUN}-log"), 30)
        assert subprocess.run(health, cwd=REPO, env=health_env, capture_output=True).returncode == 0
        wait_for(lambda: sum(1 for line in log.read_text().splitlines() if "ingest:" in line) >= 2, 30)
        consumer.send_signal(signal.SIGTERM)
        assert consumer.wait(timeout=30) == 0
    finally:
        stop_process(consumer)

    lines = [line for line in log.read_text().splitlines() if "ingest:" in line]
    assert all(LOG_LINE.search(line) for line in lines), lines
    totals = [sum(int(LOG_LINE.search(line).group(g)) for line in lines) for g in range(1, 8)]
    # messages, readings, inserted, updated, unchanged, skipped, rejected
    assert totals == [3, 3, 2, 0, 0, 1, 1]
    assert store.rejections(f"{RUN}-log")[0][2] == "payload is not UTF-8 text"
    # Stopped, it removes its heartbeat: the health check fails.
    assert not heartbeat.exists()
    assert subprocess.run(health, cwd=REPO, env=health_env, capture_output=True).returncode == 1


def test_simulated_meters_reach_the_store(store, mqtt_broker, tmp_path):
    topic = f"{RUN}-sim/meters/+/readings"
    consumer = start_consumer(store, mqtt_broker, topic, f"ingest-{RUN}-sim", tmp_path / "ingest.log")
    try:
        result = subprocess.run(
            [sys.executable, "manage.py", "simulate_meters", "--meters", "3", "--rate", "5000", "--count", "600",
             "--per-message", "4", "--prefix", "simq", "--create", "--start", "2020-03-01", "--url", mqtt_broker.url,
             "--topic", topic],
            cwd=REPO, env=store.env, capture_output=True, text=True, check=True,
        )
        assert result.stdout.startswith("600 readings of 3 meters sent to MQTT"), result.stdout
        wait_for(lambda: store.reading_count("simq-") == 600, 30)
    finally:
        stop_process(consumer)
    assert sorted(store.readings_by_meter("simq-")) == ["simq-001", "simq-002", "simq-003"]
    assert store.query("SELECT MIN(time) FROM readings_reading r JOIN readings_meter m ON m.id = r.meter_id "
                       "WHERE m.name = 'simq-001'")[0][0] is not None


def test_a_retained_reading_handed_out_again_never_undoes_a_correction(store, mqtt_broker, tmp_path):
    root = f"{RUN}-retained/meters"
    topic, client_id = f"{root}/held/readings", f"ingest-{RUN}-retained"
    value = lambda: store.query(  # noqa: E731
        "SELECT r.value FROM readings_reading r JOIN readings_meter m ON m.id = r.meter_id WHERE m.name = 'held'"
    )
    consumer = start_consumer(store, mqtt_broker, f"{root}/+/readings", client_id, tmp_path / "first.log")
    try:
        publisher = Publisher(mqtt_broker)
        publisher.publish(topic, {"time": "2024-06-01 00:00:00", "value": 100}, retain=True)
        wait_for(lambda: value() == [(100.0,)], 30)
        publisher.publish(topic, {"time": "2024-06-01 00:00:00", "value": 200})
        publisher.wait()
        wait_for(lambda: value() == [(200.0,)], 30)
    finally:
        stop_process(consumer)

    # Subscribing again, the consumer is handed the retained message (100) once more.
    consumer = start_consumer(store, mqtt_broker, f"{root}/+/readings", client_id, tmp_path / "again.log")
    try:
        wait_for(lambda: store.rejections(root), 30)
    finally:
        stop_process(consumer)
    assert value() == [(200.0,)]
    assert store.rejections(root) == [
        (topic, '{"time": "2024-06-01 00:00:00", "value": 100}',
         "reading 1: a retained message does not replace the reading stored for its time"),
    ]


def test_each_meter_s_readings_are_recorded_as_written_by_its_device(store, mqtt_broker, tmp_path):
    root = f"{RUN}-audit/meters"
    consumer = start_consumer(store, mqtt_broker, f"{root}/+/readings", f"ingest-{RUN}-audit", tmp_path / "ingest.log")
    try:
        publisher = Publisher(mqtt_broker)
        for meter, slots in [("house-7-main", range(3)), ("house-8-main", range(2))]:
            publisher.publish(f"{root}/{meter}/readings", {"readings": [{"time": slot_time(i), "value": i} for i in slots]})
        publisher.wait()
        wait_for(lambda: store.reading_count("house-") == 5, 30)
    finally:
        stop_process(consumer)
    # One write a meter, by the meter's device (the broker lets only that device publish on its topic).
    assert store.query(
        "SELECT w.written_by, w.channel, m.name, w.meter_count, w.inserted FROM readings_write w "
        "JOIN readings_meter m ON m.id = w.meter_id WHERE m.name LIKE 'house-%' ORDER BY m.name"
    ) == [("device:house-7-main", "mqtt", "house-7-main", 1, 3), ("device:house-8-main", "mqtt", "house-8-main", 1, 2)]
    assert store.query(
        "SELECT m.name, w.written_by, COUNT(*) FROM readings_readingchange c JOIN readings_meter m ON m.id = c.meter_id "
        "JOIN readings_write w ON w.id = c.write_id WHERE m.name LIKE 'house-%' GROUP BY m.name, w.written_by ORDER BY m.name"
    ) == [("house-7-main", "device:house-7-main", 3), ("house-8-main", "device:house-8-main", 2)]
