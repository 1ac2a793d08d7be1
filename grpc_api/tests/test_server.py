"""The server around the service: health, reflection, auth, TLS, concurrency, deadlines, stop."""
import json
import os
import signal
import subprocess
import sys
import threading
from concurrent.futures import ThreadPoolExecutor
from io import StringIO

import grpc
import psycopg
import pytest
import requests
from django.core.management import call_command
from django.db import connection
from google.rpc import error_details_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc
from grpc_status import rpc_status

from grpc_api.gen.meterusage.v1 import meter_usage_pb2 as pb
from grpc_api.gen.meterusage.v1 import meter_usage_pb2_grpc
from grpc_api.server import create_server
from readings.models import Meter
from testing.helpers import JANUARY, REPO, self_signed_certificate, ts, wait_for

pytestmark = pytest.mark.django_db


def test_health_reports_serving(channel):
    health = health_pb2_grpc.HealthStub(channel)

    for service in ("", "meterusage.v1.MeterUsageService"):
        response = health.Check(health_pb2.HealthCheckRequest(service=service))
        assert response.status == health_pb2.HealthCheckResponse.SERVING


def test_reflection_lists_the_services(channel):
    reflection = reflection_pb2_grpc.ServerReflectionStub(channel)

    (response,) = reflection.ServerReflectionInfo(iter([reflection_pb2.ServerReflectionRequest(list_services="")]))

    names = {s.name for s in response.list_services_response.service}
    assert {"meterusage.v1.MeterUsageService", "grpc.health.v1.Health"} <= names


def test_sixteen_clients_at_once(stub):
    def month(_):
        response = stub.ListReadings(pb.ListReadingsRequest(meter="meterusage", page_size=10_000, **JANUARY))
        return [(r.time.seconds, r.value) for r in response.readings]

    with ThreadPoolExecutor(16) as pool:
        results = list(pool.map(month, range(48)))

    assert all(len(r) == 2974 for r in results)
    assert all(r == results[0] for r in results)


def test_unary_deadline(stub):
    with pytest.raises(grpc.RpcError) as error:
        stub.AggregateReadings(
            pb.AggregateReadingsRequest(meter="gen-a", window=pb.WINDOW_15_MINUTES,
                                        start_time=ts("2019-08-01T00:00:00Z"), end_time=ts("2020-01-01T00:00:00Z")),
            timeout=0.0001,
        )
    assert error.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED


def test_grpccall_prints_json(grpc_server):
    out = StringIO()
    request = json.dumps({"meter": "meterusage", "start_time": "2019-01-01T01:00:00Z", "end_time": "2019-01-01T02:00:00Z"})

    call_command("grpccall", "ListReadings", request, target=f"127.0.0.1:{grpc_server.port}", stdout=out)

    assert [r["value"] for r in json.loads(out.getvalue())["readings"]] == [56.03, 55.77, 55.45, 55.74]


def test_calls_reuse_connections_and_leak_none(stub, django_db_blocker):
    if connection.vendor != "postgresql":
        pytest.skip("SQLite's in-memory test database keeps its connection by design")

    def others() -> set[int]:
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT pid FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()"
            )
            return {pid for (pid,) in cursor.fetchall()}

    def calls(count: int) -> None:
        for _ in range(count):
            list(stub.StreamReadings(pb.StreamReadingsRequest(meter="meterusage", batch_size=500, **JANUARY)))
            stub.ListReadings(pb.ListReadingsRequest(meter="meterusage", **JANUARY))

    calls(20)
    after_some = others()
    calls(60)

    # Each worker thread keeps one connection (DATABASE_CONN_MAX_AGE): more calls open no more.
    assert len(others() - after_some) <= 1
    assert len(others()) <= 20 + 3  # the server's 20 workers, and a few of other fixtures


def test_every_rpc_of_the_contract_needs_a_method(monkeypatch):
    from grpc_api.checks import check_every_rpc_is_served
    from grpc_api.servicers import MeterUsageService

    assert check_every_rpc_is_served(None) == []
    monkeypatch.delattr(MeterUsageService, "GetMeter")

    errors = check_every_rpc_is_served(None)

    assert [(e.id, e.msg) for e in errors] == [
        ("grpc_api.E001", "meterusage.v1.MeterUsageService.GetMeter has no method on MeterUsageService: "
                          "clients would get UNIMPLEMENTED"),
    ]


@pytest.fixture(scope="module")
def private_meter(served_data, django_db_blocker):
    """A meter of no account, not public: only staff and the service's tokens see it."""
    with django_db_blocker.unblock():
        Meter.objects.create(name="private-meter")
        yield "private-meter"
        Meter.objects.filter(name="private-meter").delete()


@pytest.fixture
def token_server(private_meter, settings):
    settings.GRPC_AUTH_TOKENS = ["s3cret", "other"]
    running = create_server("127.0.0.1:0")
    with grpc.insecure_channel(f"127.0.0.1:{running.port}") as channel:
        yield channel
    running.stop(0)


@pytest.mark.parametrize(
    ("metadata", "code"),
    [
        # No credential: anonymous, who sees public meters only.
        (None, grpc.StatusCode.NOT_FOUND),
        ((("authorization", "Bearer wrong"),), grpc.StatusCode.UNAUTHENTICATED),
        ((("authorization", "s3cret"),), grpc.StatusCode.UNAUTHENTICATED),
        ((("authorization", "Bearer s3cret"),), grpc.StatusCode.OK),
        ((("authorization", "bearer other"),), grpc.StatusCode.OK),
    ],
)
def test_bearer_tokens(token_server, private_meter, metadata, code):
    stub = meter_usage_pb2_grpc.MeterUsageServiceStub(token_server)
    try:
        list(stub.StreamReadings(pb.StreamReadingsRequest(meter=private_meter, **JANUARY), metadata=metadata))
        got = grpc.StatusCode.OK
    except grpc.RpcError as error:
        got = error.code()
    assert got == code
    try:
        names = [meter.name for meter in stub.ListMeters(pb.ListMetersRequest(page_size=1000), metadata=metadata).meters]
    except grpc.RpcError as error:
        assert error.code() == code == grpc.StatusCode.UNAUTHENTICATED
        return
    assert (private_meter in names) == (code == grpc.StatusCode.OK)
    assert "meterusage" in names  # public


def test_health_stays_open_with_tokens(token_server):
    response = health_pb2_grpc.HealthStub(token_server).Check(health_pb2.HealthCheckRequest())
    assert response.status == health_pb2.HealthCheckResponse.SERVING


def test_tls(served_data, tmp_path):
    key, cert = self_signed_certificate(tmp_path)
    running = create_server("127.0.0.1:0", tls=(key.read_bytes(), cert.read_bytes()))
    try:
        credentials = grpc.ssl_channel_credentials(root_certificates=cert.read_bytes())
        with grpc.secure_channel(f"localhost:{running.port}", credentials) as channel:
            meters = meter_usage_pb2_grpc.MeterUsageServiceStub(channel).ListMeters(pb.ListMetersRequest())
        assert "meterusage" in [m.name for m in meters.meters]
        with grpc.insecure_channel(f"127.0.0.1:{running.port}") as plain:
            with pytest.raises(grpc.RpcError) as error:
                health_pb2_grpc.HealthStub(plain).Check(health_pb2.HealthCheckRequest(), timeout=2)
        assert error.value.code() == grpc.StatusCode.UNAVAILABLE
    finally:
        running.stop(0)


def test_grpcrunserver_serves_and_stops_on_sigterm(tmp_path):
    env = {**os.environ, "DATABASE_URL": f"sqlite:///{tmp_path / 'db.sqlite3'}", "PYTHONUNBUFFERED": "1"}
    process = subprocess.Popen(
        [sys.executable, "manage.py", "grpcrunserver", "127.0.0.1:0", "--grace", "2"],
        cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    try:
        first = process.stdout.readline()
        assert first.startswith("Serving meterusage.v1 on 127.0.0.1:"), first
        port = int(first.split("127.0.0.1:")[1].split(" ")[0])
        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
            health = health_pb2_grpc.HealthStub(channel)
            assert health.Check(health_pb2.HealthCheckRequest(), timeout=5).status == health_pb2.HealthCheckResponse.SERVING
            process.send_signal(signal.SIGTERM)
            output, _ = process.communicate(timeout=15)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 0
    assert "Stopping: NOT_SERVING" in output
    assert output.rstrip().endswith("Stopped.")


def test_graceful_stop_reports_not_serving_first(served_data):
    running = create_server("127.0.0.1:0")
    with grpc.insecure_channel(f"127.0.0.1:{running.port}") as channel:
        health = health_pb2_grpc.HealthStub(channel)
        running.health.enter_graceful_shutdown()
        status = health.Check(health_pb2.HealthCheckRequest(service="meterusage.v1.MeterUsageService")).status
    running.stop(0)
    assert status == health_pb2.HealthCheckResponse.NOT_SERVING


def test_port_in_use_is_a_clear_error(grpc_server):
    with pytest.raises(OSError, match=f"cannot listen on 127.0.0.1:{grpc_server.port}"):
        create_server(f"127.0.0.1:{grpc_server.port}")


def health_status(channel, service: str = "meterusage.v1.MeterUsageService"):
    request = health_pb2.HealthCheckRequest(service=service)
    return health_pb2_grpc.HealthStub(channel).Check(request, timeout=2).status


def test_health_answers_not_serving_during_the_grace_period(served_data):
    running = create_server("127.0.0.1:0")
    stopping = threading.Thread(target=running.stop, args=(3,))
    with grpc.insecure_channel(f"127.0.0.1:{running.port}") as channel:
        assert health_status(channel) == health_pb2.HealthCheckResponse.SERVING
        stopping.start()
        # Not UNAVAILABLE: the server still answers while it drains.
        wait_for(lambda: health_status(channel) == health_pb2.HealthCheckResponse.NOT_SERVING)
    stopping.join()


def test_health_follows_the_database(served_data):
    if connection.vendor != "postgresql":
        pytest.skip("only a database server can stop answering; SQLite is a file")
    database = connection.settings_dict["NAME"]
    admin = psycopg.connect(
        host=connection.settings_dict["HOST"], port=connection.settings_dict["PORT"] or 5432,
        user=connection.settings_dict["USER"], dbname="postgres", autocommit=True,
    )
    running = create_server("127.0.0.1:0", health_check_seconds=0.1)
    try:
        with grpc.insecure_channel(f"127.0.0.1:{running.port}") as channel:
            wait_for(lambda: health_status(channel) == health_pb2.HealthCheckResponse.SERVING)
            admin.execute(f'ALTER DATABASE "{database}" ALLOW_CONNECTIONS false')
            try:
                admin.execute(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s "
                    "AND backend_type = 'client backend' AND pid <> %s",
                    [database, connection.connection.info.backend_pid if connection.connection else 0],
                )
                wait_for(lambda: health_status(channel) == health_pb2.HealthCheckResponse.NOT_SERVING)
                assert health_status(channel, "") == health_pb2.HealthCheckResponse.NOT_SERVING
            finally:
                admin.execute(f'ALTER DATABASE "{database}" ALLOW_CONNECTIONS true')
            wait_for(lambda: health_status(channel) == health_pb2.HealthCheckResponse.SERVING)
    finally:
        running.stop(0)
        admin.close()


def test_reflection_v1_lists_the_services(channel):
    from grpc_reflection.v1alpha import reflection_pb2

    call = channel.stream_stream(
        "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo",
        request_serializer=reflection_pb2.ServerReflectionRequest.SerializeToString,
        response_deserializer=reflection_pb2.ServerReflectionResponse.FromString,
    )
    responses = call(iter([reflection_pb2.ServerReflectionRequest(list_services="")]), timeout=5)

    names = {service.name for service in next(responses).list_services_response.service}
    assert {"meterusage.v1.MeterUsageService", "grpc.health.v1.Health", "grpc.reflection.v1.ServerReflection"} <= names


def test_calls_past_the_queue_are_refused_at_once(served_data, monkeypatch):
    from grpc_api import servicers

    release, arrived = threading.Event(), threading.Semaphore(0)
    real_page = servicers.selectors.reading_page

    def held_page(**kwargs):
        arrived.release()
        release.wait(10)
        return real_page(**kwargs)

    monkeypatch.setattr(servicers.selectors, "reading_page", held_page)
    # One worker and a queue of two: three calls are admitted, the rest refused.
    running = create_server("127.0.0.1:0", max_workers=1)
    request = pb.ListReadingsRequest(meter="meterusage", **JANUARY)
    try:
        with grpc.insecure_channel(f"127.0.0.1:{running.port}") as channel:
            stub = meter_usage_pb2_grpc.MeterUsageServiceStub(channel)
            calls = [stub.ListReadings.future(request, timeout=20) for _ in range(6)]
            assert arrived.acquire(timeout=10)
            refused = wait_for(lambda: [c for c in calls if c.done()] if sum(c.done() for c in calls) == 3 else None)
            # Refused before anything is made for it: even a request that is no message at all.
            raw = channel.unary_unary("/meterusage.v1.MeterUsageService/ListReadings")
            with pytest.raises(grpc.RpcError) as garbage:
                raw(b"\xff\xff\xff", timeout=10)
            release.set()
            codes = sorted(c.code().name for c in calls)
    finally:
        release.set()
        running.stop(0)

    assert {c.code() for c in refused} == {grpc.StatusCode.RESOURCE_EXHAUSTED}
    assert codes == ["OK"] * 3 + ["RESOURCE_EXHAUSTED"] * 3
    assert garbage.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    # When to come back: RetryInfo for clients, the pushback for gRPC's own retry policy.
    status = rpc_status.from_call(refused[0])
    (detail,) = status.details
    retry = error_details_pb2.RetryInfo()
    assert detail.Unpack(retry) and retry.retry_delay.ToMilliseconds() > 0
    assert dict(refused[0].trailing_metadata())["grpc-retry-pushback-ms"] == str(retry.retry_delay.ToMilliseconds())


def test_metrics_of_calls(stub):
    from meterproject.metrics import serve_metrics

    port = serve_metrics("127.0.0.1:0")
    stub.ListReadings(pb.ListReadingsRequest(meter="meterusage", **JANUARY))
    with pytest.raises(grpc.RpcError):
        stub.ListReadings(pb.ListReadingsRequest(meter="nope", **JANUARY))

    text = requests.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text

    method = "/meterusage.v1.MeterUsageService/ListReadings"
    assert f'grpc_server_handled_total{{grpc_code="OK",grpc_method="{method}"}}' in text
    assert f'grpc_server_handled_total{{grpc_code="NOT_FOUND",grpc_method="{method}"}}' in text
    assert f'grpc_server_handling_seconds_count{{grpc_method="{method}"}}' in text
    assert "grpc_server_in_flight 0.0" in text


def test_a_request_that_does_not_parse_is_invalid_argument(stub, channel):
    raw = channel.unary_unary("/meterusage.v1.MeterUsageService/ListReadings")
    with pytest.raises(grpc.RpcError) as error:
        raw(b"\xff\xff\xff", timeout=10)
    assert error.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "meterusage.v1.ListReadingsRequest" in error.value.details()
