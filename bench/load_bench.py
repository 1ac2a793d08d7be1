"""Load benchmark: how the service holds many clients at once, through the HTTP gateway and over
gRPC directly, and what it does past its capacity.

For 16, 64 and 256 concurrent clients (each a loop of calls, one at a time, on a kept-alive
connection), for a fixed time per figure, interleaved (gateway, gRPC, gateway, gRPC ...), it
reports requests/s answered OK, their median and p99 latency, how many were shed (HTTP 503 with
Retry-After / RESOURCE_EXHAUSTED, answered at once) and how many failed otherwise (timeouts, other
errors). Every call asks for one day of the reference meter's readings (96 readings).

The servers are those a user runs: `manage.py grpcrunserver` (10 worker threads) and gunicorn with
meterproject/gunicorn.conf.py (2 workers x 4 threads), each in its own process, on loopback, with
the data in a temporary SQLite file (or --database-url). `--repo` points the servers at another
checkout of the project (for a before/after); one without gunicorn.conf.py is started as its
README did (gunicorn --workers 2 --threads 4). The clients run in this process (asyncio; gRPC's
asyncio API) and share the machine's cores with the servers, as on any one-machine test.

    .venv/bin/python bench/load_bench.py                  # 10 s per figure, about 2 minutes
    .venv/bin/python bench/load_bench.py --seconds 5 --clients 16 64
"""
import argparse
import asyncio
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import grpc
from common import REPO, start_server, ts  # puts the repository on sys.path

from grpc_api.gen.meterusage.v1 import meter_usage_pb2 as pb  # noqa: E402
from grpc_api.gen.meterusage.v1 import meter_usage_pb2_grpc  # noqa: E402
from testing.influxd import free_port  # noqa: E402

DAY = ("2019-01-15T00:00:00Z", "2019-01-16T00:00:00Z")
HTTP_PATH = f"/api/v1/meters/meterusage/readings/?start={DAY[0]}&end={DAY[1]}"
CALL_TIMEOUT = 30.0


class Tally:
    """What one figure's calls came to."""

    def __init__(self):
        self.ok: list[float] = []
        self.refused: list[float] = []  # seconds each shed call took to be refused
        self.failed = 0

    @property
    def shed(self) -> int:
        return len(self.refused)


async def http_client(port: int, until: float, tally: Tally) -> None:
    """A client calling the gateway over one kept-alive connection (a new one after a close)."""
    reader = writer = None
    request = f"GET {HTTP_PATH} HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: application/json\r\n\r\n".encode()
    while time.monotonic() < until:
        began = time.perf_counter()
        try:
            if writer is None:
                reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(request)
            status, close = await asyncio.wait_for(read_response(reader), CALL_TIMEOUT)
        except (OSError, asyncio.TimeoutError, asyncio.IncompleteReadError, ValueError):
            tally.failed += 1
            writer = _closed(writer)
            continue
        if status == 200:
            tally.ok.append(time.perf_counter() - began)
        elif status == 503:
            tally.refused.append(time.perf_counter() - began)
        else:
            tally.failed += 1
        if close:
            writer = _closed(writer)
    _closed(writer)


def _closed(writer):
    if writer is not None:
        writer.close()
    return None


async def read_response(reader) -> tuple[int, bool]:
    """The status of an HTTP/1.1 response and whether the server closes the connection."""
    status = int((await reader.readline()).split()[1])
    length, close = 0, False
    while (line := await reader.readline()) not in (b"\r\n", b""):
        name, _, value = line.decode("latin-1").partition(":")
        if name.lower() == "content-length":
            length = int(value)
        elif name.lower() == "connection" and value.strip().lower() == "close":
            close = True
    await reader.readexactly(length)
    return status, close


async def grpc_client(stub, until: float, tally: Tally) -> None:
    request = pb.ListReadingsRequest(meter="meterusage", start_time=ts(DAY[0]), end_time=ts(DAY[1]))
    while time.monotonic() < until:
        began = time.perf_counter()
        try:
            await stub.ListReadings(request, timeout=CALL_TIMEOUT)
            tally.ok.append(time.perf_counter() - began)
        except grpc.aio.AioRpcError as error:
            if error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED:
                tally.refused.append(time.perf_counter() - began)
            else:
                tally.failed += 1


async def run_figure(kind: str, clients: int, seconds: float, web_port: int, grpc_port: int) -> Tally:
    tally = Tally()
    until = time.monotonic() + seconds
    if kind == "gateway":
        await asyncio.gather(*(http_client(web_port, until, tally) for _ in range(clients)))
    else:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{grpc_port}") as channel:
            stub = meter_usage_pb2_grpc.MeterUsageServiceStub(channel)
            await asyncio.gather(*(grpc_client(stub, until, tally) for _ in range(clients)))
    return tally


def start_gunicorn(repo: Path, env: dict) -> tuple[subprocess.Popen, int]:
    port = free_port()
    gunicorn = [sys.executable, "-m", "gunicorn"]
    if (repo / "meterproject" / "gunicorn.conf.py").exists():
        command = [*gunicorn, "-c", "meterproject/gunicorn.conf.py", "meterproject.wsgi"]
        env = {**env, "WEB_BIND": f"127.0.0.1:{port}"}
    else:
        command = [*gunicorn, "meterproject.wsgi", "--bind", f"127.0.0.1:{port}", "--workers", "2", "--threads", "4"]
    process = subprocess.Popen(command, cwd=repo, env={**env, "WEB_CONCURRENCY": "2", "WEB_THREADS": "4"},
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            import urllib.request

            with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=5) as response:
                if response.status == 200:
                    return process, port
        except OSError:
            time.sleep(0.2)
    process.kill()
    raise RuntimeError("gunicorn did not start")


def p50_p99_ms(samples: list[float]) -> tuple[float, float]:
    if not samples:
        return float("nan"), float("nan")
    ordered = sorted(samples)
    return statistics.median(ordered) * 1000, ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))] * 1000


# A refusal is to be the cheapest answer there is: p99 limits at 256 clients.
REFUSAL_P99_MS = {"gateway": 50.0, "gRPC direct": 20.0}


def row(kind: str, clients: int, seconds: float, tally: Tally) -> str:
    p50, p99 = p50_p99_ms(tally.ok)
    shed_p50, shed_p99 = p50_p99_ms(tally.refused)
    verdict = ""
    if clients >= 256 and tally.refused:
        verdict = "pass" if shed_p99 < REFUSAL_P99_MS[kind] else "MISS"
        verdict = f" (< {REFUSAL_P99_MS[kind]:.0f}: {verdict})"
    return (f"| {kind} | {clients} | {len(tally.ok) / seconds:,.1f} | {p50:,.0f} | {p99:,.0f} | "
            f"{tally.shed:,} | {shed_p50:,.1f} / {shed_p99:,.1f}{verdict} | {tally.failed:,} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--reference", default=os.environ.get("METERUSAGE_CSV", str(REPO.parent / "shared/data/meterusage.csv")))
    parser.add_argument("--database-url", help="Use this (empty) database instead of a temporary SQLite file.")
    parser.add_argument("--repo", type=Path, default=REPO, help="Checkout whose servers are measured.")
    parser.add_argument("--seconds", type=float, default=10.0, help="Seconds per figure.")
    parser.add_argument("--clients", type=int, nargs="+", default=[16, 64, 256])
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="load-bench-") as tmp:
        # No cached answers: every gateway request makes its gRPC call, like for like.
        env = {**os.environ, "DATABASE_URL": args.database_url or f"sqlite:///{Path(tmp) / 'bench.sqlite3'}",
               "DJANGO_DEBUG": "false", "DJANGO_SECRET_KEY": "load-bench-only", "DJANGO_LOG_LEVEL": "WARNING",
               "PYTHONUNBUFFERED": "1", "PYTHONPATH": str(args.repo), "API_CACHE_SECONDS": "0",
               "API_RATE_ANONYMOUS": "none"}  # the clients are one address: the capacity is measured, not a rate limit
        print(f"Preparing data and servers from {args.repo} ...", flush=True)
        subprocess.run([sys.executable, "manage.py", "migrate", "--verbosity", "0"], cwd=args.repo, env=env, check=True)
        subprocess.run([sys.executable, "manage.py", "import_readings", args.reference], cwd=args.repo, env=env,
                       check=True, capture_output=True)
        grpc_process, grpc_port = start_server(
            [sys.executable, str(args.repo / "manage.py"), "grpcrunserver", "127.0.0.1:0", "--max-workers", "10"], env
        )
        web_process, web_port = start_gunicorn(args.repo, {**env, "GRPC_TARGET": f"127.0.0.1:{grpc_port}"})
        verdicts: list[str] = []
        lines = ["| path | clients | OK requests/s | p50 ms | p99 ms | shed | shed p50 / p99 ms | failed |",
                 "| --- | --- | --- | --- | --- | --- | --- | --- |"]
        try:
            for clients in args.clients:
                rates = {}
                for kind in ("gateway", "gRPC direct"):
                    tally = asyncio.run(run_figure(kind, clients, args.seconds, web_port, grpc_port))
                    rates[kind] = len(tally.ok) / args.seconds
                    lines.append(row(kind, clients, args.seconds, tally))
                    print(lines[-1], flush=True)
                ratio = rates["gateway"] / rates["gRPC direct"] if rates["gRPC direct"] else 0.0
                goal = ("; goal at 64 clients >= 0.5: " + ("pass" if ratio >= 0.5 else "MISS")) if clients == 64 else ""
                verdicts.append(f"- {clients} clients: gateway / gRPC direct OK requests/s = {ratio:.2f}{goal}")
        finally:
            for process in (web_process, grpc_process):
                process.terminate()
                process.wait(timeout=30)
        print(f"\nLoad: one day of readings (96) per call, {args.seconds:g} s per figure, 2 gunicorn workers x 4 "
              "threads, gRPC server with 10 worker threads, loopback, the clients in the same machine.")
        print("\n".join(lines))
        print("\n".join(verdicts))


if __name__ == "__main__":
    main()
