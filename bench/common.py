"""What the benchmark scripts share: the repository on sys.path, a throwaway secret key for the
servers they start, and small helpers to run manage.py, start a gRPC server and time calls."""
import http.client
import os
import secrets
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
# The project refuses to start without a key (outside debug); the bench's servers get a throwaway one.
os.environ.setdefault("DJANGO_SECRET_KEY", "bench-only-" + secrets.token_urlsafe(32))


def ts(text: str):
    """A google.protobuf.Timestamp from RFC 3339 text."""
    from google.protobuf import timestamp_pb2

    stamp = timestamp_pb2.Timestamp()
    stamp.FromJsonString(text)
    return stamp


def postgres_admin(url: str, statement: str) -> None:
    """Run one statement outside a transaction (CREATE / DROP DATABASE) on the server at `url`."""
    import psycopg

    with psycopg.connect(url, autocommit=True) as connection:
        connection.execute(statement)


def manage(env: dict, *args: str) -> str:
    """Run a manage.py command with `env`; returns what it printed, raises if it failed."""
    return subprocess.run(
        [sys.executable, "manage.py", *args], cwd=REPO, env=env, check=True, capture_output=True, text=True
    ).stdout


def start_server(command: list[str], env: dict) -> tuple[subprocess.Popen, int]:
    """Start a server that prints "... 127.0.0.1:PORT ..." on its first line; returns it and PORT."""
    process = subprocess.Popen(command, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    line = process.stdout.readline()
    if "127.0.0.1:" not in line:
        process.kill()
        raise RuntimeError(f"server did not start: {line!r}")
    # What it prints later (its call log) is read and dropped: a full pipe would stop the server.
    threading.Thread(target=process.stdout.read, daemon=True).start()
    return process, int(line.split("127.0.0.1:")[1].split(" ")[0])


def start_gunicorn(env: dict, workers: int) -> tuple[subprocess.Popen, int]:
    """The gateway as it is deployed (gunicorn with meterproject/gunicorn.conf.py) on a free port,
    once /healthz answers; `env` as given."""
    from testing.influxd import free_port

    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "gunicorn", "-c", "meterproject/gunicorn.conf.py", "meterproject.wsgi"],
        cwd=REPO, env={**env, "WEB_BIND": f"127.0.0.1:{port}", "WEB_CONCURRENCY": str(workers)},
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            connection = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
            connection.request("GET", "/healthz")
            if connection.getresponse().status == 200:
                connection.close()
                return process, port
        except OSError:
            time.sleep(0.1)
    process.kill()
    raise RuntimeError("gunicorn did not start")


def latency(call, calls: int, warm_up: int = 5) -> tuple[float, float]:
    """Median and p99 in milliseconds of `calls` calls of `call()`, after a few warm-up calls."""
    for _ in range(warm_up):
        call()
    samples = []
    for _ in range(calls):
        began = time.perf_counter()
        call()
        samples.append((time.perf_counter() - began) * 1000)
    samples.sort()
    return statistics.median(samples), samples[min(len(samples) - 1, int(len(samples) * 0.99))]


def alternating(first, second, calls: int, warm_up: int = 5) -> tuple[list[float], list[float]]:
    """Milliseconds of `calls` calls of each of two callables, one of each in turn (after a few
    warm-up calls), so that the machine's other load falls on both alike."""
    for _ in range(warm_up):
        first()
        second()
    samples = ([], [])
    for _ in range(calls):
        for call, kept in ((first, samples[0]), (second, samples[1])):
            began = time.perf_counter()
            call()
            kept.append((time.perf_counter() - began) * 1000)
    return samples
