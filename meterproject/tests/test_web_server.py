"""The web server as deployed (gunicorn with meterproject/gunicorn.conf.py, in front of a real
grpcrunserver): problem documents for what gunicorn answers itself, load shed at once past
capacity, metrics, and calls spread over several gRPC servers without a failed request when
one of them dies."""
import json
import signal
import socket
import threading
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests

from testing.helpers import problem
from testing.servers import start_grpc_server, start_web_server, stop_process

READINGS = "/api/v1/meters/meterusage/readings/?start=2019-01-01T00:00:00Z&end=2019-01-02T00:00:00Z"


@pytest.fixture(scope="module")
def grpc_process(process_env, tmp_path_factory):
    process, port = start_grpc_server(process_env, tmp_path_factory.mktemp("grpc") / "grpc.log")
    yield port
    stop_process(process)


@pytest.fixture(scope="module")
def web(process_env, grpc_process, tmp_path_factory):
    env = {**process_env, "GRPC_TARGET": f"127.0.0.1:{grpc_process}", "METRICS_TOKEN": "metrics-token"}
    process, port = start_web_server(env, tmp_path_factory.mktemp("web") / "web.log")
    yield f"http://127.0.0.1:{port}"
    stop_process(process)


def test_a_request_line_longer_than_gunicorns_default_reaches_the_app(web):
    # Over gunicorn's default limit of 4094 bytes: answered by the API as any other request.
    response = requests.get(f"{web}{READINGS}&ignored={'x' * 6000}", timeout=10)

    assert response.status_code == 200
    assert len(response.json()["readings"]) == 95


def test_a_request_line_past_every_limit_is_a_problem_document(web):
    body = problem(requests.get(f"{web}/api/v1/meters/?search={'x' * 9000}", timeout=10), 414)

    assert body["title"] == "URI Too Long" or body["title"] == "Request-URI Too Long"
    assert body["detail"].startswith("Request Line is too large")


def test_a_request_gunicorn_cannot_parse_is_a_problem_document(web):
    port = int(web.rsplit(":", 1)[1])
    with socket.create_connection(("127.0.0.1", port), timeout=5) as raw:
        raw.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nBad Header Name: 1\r\n\r\n")
        answer = raw.recv(65536).decode("latin-1")

    head, _, body = answer.partition("\r\n\r\n")
    assert head.startswith("HTTP/1.1 400 ")
    assert "Content-Type: application/problem+json" in head
    assert json.loads(body)["status"] == 400


def test_metrics_need_the_token_and_count_requests(web):
    requests.get(f"{web}{READINGS}", timeout=10).raise_for_status()

    refused = requests.get(f"{web}/metrics", timeout=10)
    text = requests.get(f"{web}/metrics", headers={"Authorization": "Bearer metrics-token"}, timeout=10).text

    assert problem(refused, 401)["detail"].startswith("metrics need a staff user or the metrics token")
    assert 'http_requests_total{method="GET",route="api/v1/meters/<slug:meter>/readings/",status="200"}' in text
    assert 'http_request_duration_seconds_count{method="GET",route="api/v1/meters/<slug:meter>/readings/"}' in text
    assert 'meterusage_import_runs_total{status="succeeded",target="sql"} 1.0' in text
    assert 'meterusage_imported_rows_total{outcome="inserted",target="sql"} 2974.0' in text


@pytest.fixture
def silent_grpc_server():
    """A port that accepts connections and never answers: every call waits for its deadline."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(64)
    accepted, stop = [], threading.Event()

    def accept():
        listener.settimeout(0.2)
        while not stop.is_set():
            try:
                accepted.append(listener.accept()[0])
            except OSError:
                pass

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield listener.getsockname()[1]
    stop.set()
    thread.join()
    for connection in accepted:
        connection.close()
    listener.close()


def test_past_its_threads_and_queue_the_server_answers_503_at_once(process_env, silent_grpc_server, tmp_path):
    env = {**process_env, "GRPC_TARGET": f"127.0.0.1:{silent_grpc_server}", "GRPC_DEADLINE_SECONDS": "3",
           "WEB_CONCURRENCY": "1", "WEB_THREADS": "1", "WEB_QUEUE_PER_THREAD": "2"}
    process, port = start_web_server(env, tmp_path / "web.log")
    try:
        with ThreadPoolExecutor(8) as pool:
            answers = list(pool.map(lambda _: requests.get(f"http://127.0.0.1:{port}{READINGS}", timeout=30), range(8)))
    finally:
        stop_process(process)

    statuses = sorted(answer.status_code for answer in answers)
    shed = [answer for answer in answers if answer.status_code == 503]
    # One thread and a queue of two wait for the silent server (504); the other five are shed.
    assert statuses == [503] * 5 + [504] * 3
    assert all(answer.headers["Retry-After"] == "1" for answer in shed)
    assert all(answer.json()["detail"] == "the server is at capacity; try again shortly" for answer in shed)
    # Shed at once: each 503 came back before any admitted request met its deadline (504).
    assert max(a.elapsed for a in shed) < min(a.elapsed for a in answers if a.status_code == 504)


def test_calls_go_to_every_grpc_server_and_survive_one_dying(process_env, tmp_path):
    first, first_port = start_grpc_server(process_env, tmp_path / "first.log")
    second, second_port = start_grpc_server(process_env, tmp_path / "second.log")
    # No cached answers: every request must reach a gRPC server.
    env = {**process_env, "GRPC_TARGET": f"127.0.0.1:{first_port},127.0.0.1:{second_port}", "WEB_THREADS": "4",
           "API_CACHE_SECONDS": "0"}
    web_process, web_port = start_web_server(env, tmp_path / "web.log")
    killed = threading.Event()

    def one_call(number: int) -> int:
        if number == 60:
            second.send_signal(signal.SIGKILL)
            killed.set()
        with requests.Session() as session:
            return session.get(f"http://127.0.0.1:{web_port}{READINGS}", timeout=30).status_code

    try:
        with ThreadPoolExecutor(4) as pool:
            statuses = list(pool.map(one_call, range(150)))
        served_by_second = (tmp_path / "second.log").read_text().count("ListReadings OK")
        served_by_first = (tmp_path / "first.log").read_text().count("ListReadings OK")
    finally:
        for process in (web_process, first, second):
            stop_process(process)

    assert killed.is_set()
    assert statuses == [200] * 150
    assert served_by_first > 0 and served_by_second > 0
    assert served_by_first + served_by_second >= 150
