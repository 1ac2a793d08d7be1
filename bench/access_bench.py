"""Access benchmark: a month of readings read with an API key beside the same month read without
authentication, over gRPC and over the HTTP gateway.

The data, in a fresh database (a SQLite file, or the PostgreSQL database named by --database-url,
which the bench creates and drops): the reference month imported twice with the project's own
`import_readings`, into a private meter of an account (`--account`) and into a second meter marked
public; a member of the account with a read key made by `manage.py apikey create USER --scope read`.
The "no authentication" call reads the public meter anonymously; the "key" call reads the private
meter with `authorization: Bearer <key>`. Both return the same readings.

The servers run as users run them: `manage.py grpcrunserver 127.0.0.1:0` with DJANGO_DEBUG=0 (its
call log to a file), and the gateway in gunicorn calling it, with API_CACHE_SECONDS=0 so that every
call reaches the service, and API_RATE_ANONYMOUS / API_RATE_USER / API_RATE_KEY far above what one
client sends (a rate that never binds still counts every request, the key's and the anonymous
alike, as a deployment's rates do). Calls go one at a
time from this process over loopback, the two kinds alternating call by call, in --rounds rounds of
--calls calls of each kind (which kind goes first alternates round by round). Goal: the key's call
costs at most 1.1x the anonymous one (the median of the rounds' ratios of medians), for each
protocol. On a MISS (or with --explain), the cost of resolving the credentials in one process is
timed and printed: `caller_for_bearer` for a key kept in the 0.5 s cache and for one not kept, the
gateway's own `key_for`, and the anonymous visitor's signed credential.

    .venv/bin/python bench/access_bench.py                  # SQLite, 7 rounds of 100 calls of each kind
    .venv/bin/python bench/access_bench.py --database-url postgres://postgres@127.0.0.1:5432/access_bench
"""
import argparse
import http.client
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from urllib.parse import urlencode, urlsplit, urlunsplit

import grpc
import orjson

from common import REPO, manage, start_gunicorn, ts  # puts the repository on sys.path
from outside_bench import CALL_LOG, start_logged_server

from grpc_api.gen.meterusage.v1 import meter_usage_pb2 as pb  # noqa: E402
from grpc_api.gen.meterusage.v1 import meter_usage_pb2_grpc  # noqa: E402

MONTH = ("2019-01-01T00:00:00Z", "2019-02-01T00:00:00Z")
PAGE_SIZE = 10_000
LIMIT = 1.1
ACCOUNT, USER = "bench-account", "bench-user"
PRIVATE, PUBLIC = "month-private", "month-public"
KINDS = ("no authentication", "key")
# The gateway's rate limits, never reached by one client calling one at a time.
UNBOUND_RATE = "1000000/minute"


def prepare(env: dict, reference: Path) -> str:
    """The database's account, meters, readings and key; returns the key's text."""
    manage(env, "migrate", "--no-input")
    manage(env, "account", "add", ACCOUNT, "--user", USER)
    manage(env, "import_readings", str(reference), "--meter", PRIVATE, "--account", ACCOUNT)
    manage(env, "import_readings", str(reference), "--meter", PUBLIC, "--account", ACCOUNT)
    manage(env, "shell", "-c",
           f"from readings.models import Meter; Meter.objects.filter(name={PUBLIC!r}).update(public=True)")
    return manage(env, "apikey", "create", USER, "--scope", "read").strip().splitlines()[-1]


def postgres_database(url: str, create: bool) -> None:
    """Create (afresh) or drop the database `url` names, through the server's `postgres` database."""
    import psycopg

    name = urlsplit(url).path.lstrip("/")
    if name in ("", "postgres"):
        raise SystemExit("--database-url: name a database of the bench's own (it is dropped afterwards)")
    with psycopg.connect(urlunsplit(urlsplit(url)._replace(path="/postgres")), autocommit=True) as connection:
        connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        if create:
            connection.execute(f'CREATE DATABASE "{name}"')


def grpc_calls(stub, key: str):
    """(anonymous call of the public meter, key call of the private meter); each returns its count."""
    def request(meter):
        return pb.ListReadingsRequest(meter=meter, start_time=ts(MONTH[0]), end_time=ts(MONTH[1]), page_size=PAGE_SIZE)

    public, private = request(PUBLIC), request(PRIVATE)
    metadata = (("authorization", f"Bearer {key}"),)
    return (lambda: len(stub.ListReadings(public).readings),
            lambda: len(stub.ListReadings(private, metadata=metadata).readings))


def http_calls(connection: http.client.HTTPConnection, key: str):
    query = urlencode({"start": MONTH[0], "end": MONTH[1], "page_size": PAGE_SIZE})

    def get(meter, headers):
        url = f"/api/v1/meters/{meter}/readings/?{query}"

        def call():
            connection.request("GET", url, headers=headers)
            response = connection.getresponse()
            body = response.read()
            if response.status != 200:
                raise RuntimeError(f"{url}: HTTP {response.status}: {body[:300]!r}")
            return len(orjson.loads(body)["readings"])

        return call

    return (get(PUBLIC, {"Accept": "application/json"}),
            get(PRIVATE, {"Accept": "application/json", "Authorization": f"Bearer {key}"}))




def percentile(samples: list[float], fraction: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(len(ordered) * fraction))]


def interleaved(calls: tuple, rounds: int, per_round: int, order: list[str], warm_up: int = 10):
    """Milliseconds of each kind, round by round, the kinds alternating call by call; `order`
    records the kind of every call made (the server's call log is matched against it)."""
    counts = set()
    for _ in range(warm_up):
        for kind, call in zip(KINDS, calls):
            counts.add(call())
            order.append(kind)
    if len(counts) != 1:
        raise RuntimeError(f"the two calls returned different numbers of readings: {sorted(counts)}")
    samples = [[[] for _ in KINDS] for _ in range(rounds)]
    for round_ in range(rounds):
        pairs = list(zip(range(len(KINDS)), KINDS, calls))
        if round_ % 2:
            pairs.reverse()  # which kind goes first alternates round by round
        for _ in range(per_round):
            for index, kind, call in pairs:
                began = time.perf_counter()
                call()
                samples[round_][index].append((time.perf_counter() - began) * 1000)
                order.append(kind)
    return counts.pop(), samples


def summary(protocol: str, samples, server_own: dict | None) -> tuple[str, bool]:
    every = [[ms for round_ in samples for ms in round_[index]] for index in range(len(KINDS))]
    ratios = [statistics.median(round_[1]) / statistics.median(round_[0]) for round_ in samples]
    ratio = statistics.median(ratios)
    met = ratio <= LIMIT
    own = ""
    if server_own:
        own = " / ".join(f"{statistics.median(server_own[kind]):.2f}" for kind in KINDS)
    cells = [f"{statistics.median(ms):.2f} / {percentile(ms, 0.9):.2f}" for ms in every]
    return (f"| {protocol} | {cells[0]} | {cells[1]} | {own} | {' '.join(f'{r:.2f}' for r in ratios)} | "
            f"{ratio:.3f}x | <= {LIMIT:g}x | {'pass' if met else 'MISS'} |"), met


def server_times(log: Path, order: list[str]) -> dict[str, list[float]] | None:
    """The service's own time of each ListReadings call by kind, from its call log (one line a call,
    in the order the calls were made, as they were made one at a time)."""
    durations = [float(ms) for method, ms in CALL_LOG.findall(log.read_text()) if method == "ListReadings"]
    if len(durations) != len(order):
        return None
    by_kind = {kind: [] for kind in KINDS}
    for kind, ms in zip(order, durations):
        by_kind[kind].append(ms)
    return by_kind


RESOLVING = r"""
import json, statistics, sys, time
import django
django.setup()
from django.contrib.auth.models import AnonymousUser
from accounts.access import caller_for_bearer, forget_resolved, user_credential
from accounts.keys import key_for
from django.core.signals import request_finished, request_started
from django.db import connection
from django.test.utils import CaptureQueriesContext
from rest_framework.test import APIRequestFactory
from gateway.api.callers import credential_of
from gateway.api.views import ReadingsView

key = sys.argv[1]
def timed(call, times, before=lambda: None):
    samples = []
    for _ in range(times):
        before()
        began = time.perf_counter()
        call()
        samples.append((time.perf_counter() - began) * 1e6)
    return statistics.median(samples)

def as_a_request(call):
    # A request's bounds in the gateway: at its start a kept connection is checked (a round trip
    # before the first query, CONN_HEALTH_CHECKS), at its end it may be closed.
    def request():
        request_started.send(sender=None)
        call()
        request_finished.send(sender=None)
    return request

def gateway_preamble(headers):
    # What the gateway does for a readings request before it calls the service: DRF's
    # authentication, permissions and throttles, and the credential it passes on.
    factory = APIRequestFactory()
    def preamble():
        view = ReadingsView()
        view.args, view.kwargs, view.headers = (), {"meter": "m"}, {}
        request = view.initialize_request(factory.get("/api/v1/meters/m/readings/", HTTP_HOST="127.0.0.1", **headers))
        view.request = request
        view.initial(request)
        credential_of(request)
    return as_a_request(preamble)

caller_for_bearer(key)
anonymous = user_credential(AnonymousUser())
with CaptureQueriesContext(connection) as queries:
    key_for(key)
print(json.dumps({
    "caller_for_bearer(key), kept (the 0.5 s cache)": timed(lambda: caller_for_bearer(key), 2000),
    "caller_for_bearer(key), not kept (database)": timed(lambda: caller_for_bearer(key), 300, forget_resolved),
    f"key_for(key) (the gateway's authentication when not kept: {len(queries)} query)": timed(lambda: key_for(key), 300),
    "... within a request's bounds (the kept connection checked first)": timed(as_a_request(lambda: key_for(key)), 300),
    "a request's bounds alone, no query (the anonymous call's gateway)": timed(as_a_request(lambda: None), 300),
    "the gateway's preamble (authentication, permissions, throttles), anonymous": timed(gateway_preamble({}), 300),
    "the gateway's preamble, with the key": timed(gateway_preamble({"HTTP_AUTHORIZATION": f"Bearer {key}"}), 300),
    "caller_for_bearer(anonymous visitor's signed credential), not kept": timed(lambda: caller_for_bearer(anonymous), 300, forget_resolved),
    "caller_for_bearer(''), anonymous gRPC": timed(lambda: caller_for_bearer(""), 2000),
}))
"""


def resolving_costs(env: dict, key: str) -> dict[str, float]:
    """Microseconds (medians) of resolving each credential in one process, as the servers do."""
    output = subprocess.run([sys.executable, "-c", RESOLVING, key], cwd=REPO, check=True, capture_output=True,
                            text=True, env={**env, "DJANGO_SETTINGS_MODULE": "meterproject.settings"}).stdout
    return json.loads(output.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--reference", default=os.environ.get("METERUSAGE_CSV", str(REPO.parent / "shared/data/meterusage.csv")))
    parser.add_argument("--database-url", help="A PostgreSQL database for the bench alone: created afresh, dropped after.")
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--calls", type=int, default=100, help="Calls of each kind a round.")
    parser.add_argument("--workers", type=int, default=2, help="gunicorn workers.")
    parser.add_argument("--explain", action="store_true", help="Time the credentials' resolution even when both pass.")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="access-bench-") as tmp:
        folder = Path(tmp)
        store = "PostgreSQL" if args.database_url else "SQLite"
        env = {**os.environ, "DATABASE_URL": args.database_url or f"sqlite:///{folder / 'bench.sqlite3'}",
               "DJANGO_DEBUG": "0", "DJANGO_SECRET_KEY": "access-bench-only", "PYTHONUNBUFFERED": "1"}
        env.pop("DJANGO_LOG_LEVEL", None)  # the servers' own default, as a user runs them
        if args.database_url:
            postgres_database(args.database_url, create=True)
        try:
            began = time.monotonic()
            print(f"Preparing {store}: the reference month into {PRIVATE} (account {ACCOUNT}) and {PUBLIC} (public), "
                  f"a read key of {USER} ...", flush=True)
            key = prepare({**env, "DJANGO_LOG_LEVEL": "WARNING"}, Path(args.reference))
            print(f"  ready in {time.monotonic() - began:.1f} s", flush=True)
            lines, missed = run(args, env, folder, key)
            print(f"\nAccess benchmark ({store}): ListReadings of the reference month, anonymous on a public meter "
                  f"beside an API key on a private meter holding the same readings; {args.rounds} rounds of "
                  f"{args.calls} calls of each kind, alternating call by call; milliseconds.")
            print("\n".join(lines))
            if missed or args.explain:
                print(f"\nResolving credentials in one process ({store}), median microseconds:")
                print("| step | µs |\n| --- | --- |")
                for step, micros in resolving_costs({**env, "DJANGO_LOG_LEVEL": "WARNING", "API_RATE_ANONYMOUS": UNBOUND_RATE,
                                                  "API_RATE_USER": UNBOUND_RATE, "API_RATE_KEY": UNBOUND_RATE}, key).items():
                    print(f"| {step} | {micros:.1f} |")
        finally:
            if args.database_url:
                postgres_database(args.database_url, create=False)


def run(args, env: dict, folder: Path, key: str) -> tuple[list[str], bool]:
    log = folder / "grpc-server.log"
    grpc_server, grpc_port = start_logged_server(env, log)
    web = None
    order: list[str] = []
    try:
        web, web_port = start_gunicorn(
            {**env, "GRPC_TARGET": f"127.0.0.1:{grpc_port}", "API_RATE_ANONYMOUS": UNBOUND_RATE, "API_RATE_USER": UNBOUND_RATE,
             "API_RATE_KEY": UNBOUND_RATE, "API_CACHE_SECONDS": "0"}, args.workers)
        with grpc.insecure_channel(f"127.0.0.1:{grpc_port}") as channel:
            stub = meter_usage_pb2_grpc.MeterUsageServiceStub(channel)
            grpc_order: list[str] = []
            readings, grpc_samples = interleaved(grpc_calls(stub, key), args.rounds, args.calls, grpc_order)
        connection = http.client.HTTPConnection("127.0.0.1", web_port, timeout=30)
        http_order: list[str] = []
        http_readings, http_samples = interleaved(http_calls(connection, key), args.rounds, args.calls, http_order)
        connection.close()
        if http_readings != readings:
            raise RuntimeError(f"HTTP returned {http_readings} readings, gRPC {readings}")
        order = grpc_order + http_order
    finally:
        for process in (web, grpc_server):
            if process is not None:
                process.terminate()
                process.wait(timeout=30)
    own = server_times(log, order)
    own_grpc = own_http = None
    if own:  # the call log's lines follow the calls' order: the gRPC phase's first, then the gateway's
        split = {kind: grpc_order.count(kind) for kind in KINDS}
        own_grpc = {kind: own[kind][:split[kind]] for kind in KINDS}
        own_http = {kind: own[kind][split[kind]:] for kind in KINDS}
    lines = [f"({readings:,} readings a call; the gateway: gunicorn, {args.workers} workers)", "",
             "| protocol | no authentication (public meter), median / p90 | API key (private meter), median / p90 | "
             "the service's own (call log), no auth / key, median | key / no auth, each round | median of the "
             "rounds' ratios | limit | verdict |",
             "| --- | --- | --- | --- | --- | --- | --- | --- |"]
    missed = False
    for protocol, samples, server_own in (("gRPC ListReadings", grpc_samples, own_grpc),
                                          ("HTTP GET readings/", http_samples, own_http)):
        line, met = summary(protocol, samples, server_own)
        lines.append(line)
        missed |= not met
    return lines, missed


if __name__ == "__main__":
    main()
