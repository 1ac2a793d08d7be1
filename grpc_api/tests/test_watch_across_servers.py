"""A watcher that stays on through server restarts: writes go to one server (and an import runs in
another process) while the server it watches is stopped and killed and started again; reconnecting
with its last resume token, it receives every committed change exactly once, in order per meter."""
import os
import signal
import subprocess
import sys
import time
import uuid

import grpc
import psycopg
import pytest

from grpc_api.gen.meterusage.v1 import meter_usage_pb2 as pb
from grpc_api.gen.meterusage.v1 import meter_usage_pb2_grpc
from testing.helpers import REPO, WRITE_TOKEN, WRITER, ts, wait_for
from testing.influxd import free_port
from testing.servers import ReconnectingWatcher, start_grpc_server, start_grpc_server_on, stop_process

pytestmark = pytest.mark.django_db

METERS = [f"watched-{i}" for i in range(5)]


@pytest.fixture(scope="module")
def servers_env(tmp_path_factory, django_db_setup):
    """A database of the servers' own (PostgreSQL when the tests run on it: NOTIFY is what wakes
    the watchers there; else a SQLite file), migrated, with the watched meters."""
    folder = tmp_path_factory.mktemp("watch-servers")
    url = os.environ.get("DATABASE_URL", "")
    database = None
    if url.startswith("postgres"):
        database = f"watch_{uuid.uuid4().hex[:8]}"
        admin_url = f"{url.rsplit('/', 1)[0]}/postgres"
        with psycopg.connect(admin_url, autocommit=True) as admin:
            admin.execute(f"CREATE DATABASE {database}")
        url = f"{url.rsplit('/', 1)[0]}/{database}"
    else:
        url = f"sqlite:///{folder / 'db.sqlite3'}"
    env = {
        **os.environ, "DATABASE_URL": url, "PYTHONUNBUFFERED": "1", "DJANGO_DEBUG": "false",
        "GRPC_WRITE_TOKENS": WRITE_TOKEN, "WATCH_HEARTBEAT_SECONDS": "1", "GRPC_HEALTH_CHECK_SECONDS": "0.5",
    }
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    manage(env, "migrate", "--verbosity", "0")
    manage(env, "shell", "-c", f"from readings.models import Meter; [Meter.objects.create(name=n) for n in {METERS!r}]")
    yield env, folder
    if database:
        with psycopg.connect(admin_url, autocommit=True) as admin:
            admin.execute(f"DROP DATABASE IF EXISTS {database} WITH (FORCE)")


def manage(env: dict, *args: str) -> str:
    return subprocess.run(
        [sys.executable, "manage.py", *args], cwd=REPO, env=env, check=True, capture_output=True, text=True
    ).stdout


def test_every_change_exactly_once_through_server_restarts(servers_env):
    env, folder = servers_env
    writes_server, writes_port = start_grpc_server(env, folder / "writes.log")
    watched_port = free_port()
    watched, _ = start_grpc_server_on(env, folder / "watched-1.log", watched_port)
    watcher = ReconnectingWatcher(watched_port, METERS)
    watcher.start()
    caused = 0
    latest: dict[tuple[str, int], float] = {}
    try:
        with grpc.insecure_channel(f"127.0.0.1:{writes_port}") as channel:
            stub = meter_usage_pb2_grpc.MeterUsageServiceStub(channel)
            base = 1546300800
            for batch in range(60):
                readings = []
                for k, meter in enumerate(METERS):
                    slot = base + 900 * (batch * 2 + k % 2)
                    value = float(batch * 10 + k)
                    readings.append(pb.ReadingInput(meter=meter, time=_stamp(slot), value=value))
                    if batch % 3 == 2:  # a correction of a reading two batches back
                        earlier = base + 900 * ((batch - 2) * 2 + k % 2)
                        readings.append(pb.ReadingInput(meter=meter, time=_stamp(earlier), value=value + 0.5))
                answer = stub.WriteReadings(pb.WriteReadingsRequest(readings=readings), metadata=WRITER, timeout=30)
                caused += answer.inserted_count + answer.updated_count
                for reading in readings:
                    latest[(reading.meter, reading.time.seconds)] = reading.value
                if batch == 20:
                    watched.send_signal(signal.SIGTERM)  # graceful: watches end, clients resume
                    watched.wait(30)
                if batch == 25:
                    watched, _ = start_grpc_server_on(env, folder / "watched-2.log", watched_port)
                if batch == 35:
                    caused += _import_in_another_process(env, folder, latest)
                if batch == 40:
                    watched.kill()  # no goodbye at all
                    watched.wait(30)
                if batch == 45:
                    watched, _ = start_grpc_server_on(env, folder / "watched-3.log", watched_port)
                time.sleep(0.05)
        wait_for(lambda: len(watcher.received) >= caused, 60)
        time.sleep(1.5)  # anything beyond would be a duplicate: give it time to show
    finally:
        watcher.stopping.set()
        stop_process(watched)
        stop_process(writes_server)

    received = watcher.received
    assert len(received) == caused
    assert len(set(received)) == len(received), "a change arrived twice"
    assert watcher.reconnects >= 2
    # The last change of each (meter, time) is the value stored last; per meter, changes of one
    # time come in the order they were written (a correction after the reading it corrects).
    final = {}
    for meter, seconds, value, _ in received:
        final[(meter, seconds)] = value
    assert final == latest
    for meter in METERS:
        firsts = {}
        for m, seconds, value, replaced in received:
            if m == meter:
                assert replaced == (seconds in firsts), (meter, seconds, value)
                firsts.setdefault(seconds, value)


def _stamp(seconds: int):
    stamp = ts("1970-01-01T00:00:00Z")
    stamp.seconds = seconds
    return stamp


def _import_in_another_process(env: dict, folder, latest: dict) -> int:
    """Corrections and new readings of one meter by `import_readings`; the changes it caused."""
    meter = METERS[0]
    base = 1546300800
    rows = {base + 900 * i: 1000.0 + i for i in (0, 1, 200, 201)}
    path = folder / "import.csv"
    path.write_text("time,meterusage\n" + "".join(
        f"{time.strftime('%Y-%m-%d %H:%M:%S', time.gmtime(s))},{v}\n" for s, v in rows.items()
    ))
    printed = manage(env, "import_readings", str(path), "--meter", meter)
    inserted = int(printed.split(" inserted")[0].split()[-1])
    updated = int(printed.split(" updated")[0].split()[-1])
    for seconds, value in rows.items():
        latest[(meter, seconds)] = value
    return inserted + updated
