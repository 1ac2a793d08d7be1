"""The API's rate limits through a real web server: past its rate an address is answered 429 with
Retry-After and a problem document, and its own X-Forwarded-For does not lift the limit; a key
past its own rate too, and not its user's other keys."""
import subprocess
import sys

import pytest
import requests

from testing.helpers import REPO
from testing.servers import start_grpc_server, start_web_server, stop_process

RATE = 5


@pytest.fixture
def limited_web_server(process_env, tmp_path):
    grpc_process, grpc_port = start_grpc_server(process_env, tmp_path / "grpc.log")
    env = {**process_env, "GRPC_TARGET": f"127.0.0.1:{grpc_port}", "API_RATE_ANONYMOUS": f"{RATE}/minute",
           "API_CACHE_SECONDS": "0", "WEB_CONCURRENCY": "1"}  # one process: one count (no Redis here)
    web, port = start_web_server(env, tmp_path / "web.log")
    yield f"http://127.0.0.1:{port}"
    stop_process(web)
    stop_process(grpc_process)


def test_past_its_rate_an_address_is_answered_429_with_when_to_come_back(limited_web_server):
    url = f"{limited_web_server}/api/v1/meters/meterusage/readings/?start=2019-01-01T00:00:00Z&end=2019-01-01T01:00:00Z"
    answers = [requests.get(url, timeout=30) for _ in range(RATE + 1)]

    assert [answer.status_code for answer in answers] == [200] * RATE + [429]
    refused = answers[-1]
    assert refused.headers["Content-Type"] == "application/problem+json"
    assert refused.json()["status"] == 429
    assert 0 < int(refused.headers["Retry-After"]) <= 60
    assert requests.get(url, headers={"X-Forwarded-For": "203.0.113.9"}, timeout=30).status_code == 429


def test_past_its_rate_a_key_is_answered_429_and_another_key_is_not(process_env, tmp_path):
    def manage(*args: str) -> str:
        done = subprocess.run([sys.executable, "manage.py", *args], cwd=REPO, env=process_env, check=True,
                              capture_output=True, text=True)
        return done.stdout.strip().splitlines()[-1]

    manage("account", "add", "rated", "--user", "rita")
    first, second = manage("apikey", "create", "rita"), manage("apikey", "create", "rita")
    grpc_process, grpc_port = start_grpc_server(process_env, tmp_path / "grpc.log")
    env = {**process_env, "GRPC_TARGET": f"127.0.0.1:{grpc_port}", "API_RATE_KEY": f"{RATE}/minute",
           "API_CACHE_SECONDS": "0", "WEB_CONCURRENCY": "1"}
    web, port = start_web_server(env, tmp_path / "web.log")
    try:
        url = f"http://127.0.0.1:{port}/api/v1/meters/meterusage/"

        def get(key: str) -> int:
            return requests.get(url, headers={"Authorization": f"Bearer {key}"}, timeout=30).status_code

        assert [get(first) for _ in range(RATE + 1)] == [200] * RATE + [429]
        assert get(second) == 200
    finally:
        stop_process(web)
        stop_process(grpc_process)
