"""Container health probe: exit 0 when this container's server answers, 1 otherwise.

ROLE=web: GET /healthz on $PORT must answer 200. ROLE=grpc: grpc.health.v1 Check of the
meterusage service on the port of $GRPC_ADDRESS must say SERVING. ROLE=ingest: the heartbeat
file ingest_mqtt touches while connected ($INGEST_HEARTBEAT_FILE) must be under
$INGEST_HEARTBEAT_MAX_AGE seconds old (default 30). Imports no Django: it runs every few seconds.
"""
import os
import sys
import time
import urllib.request


def web_ok() -> bool:
    url = f"http://127.0.0.1:{os.environ.get('PORT', '8000')}/healthz"
    with urllib.request.urlopen(url, timeout=3) as response:
        return response.status == 200


def grpc_ok() -> bool:
    import grpc
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    port = os.environ.get("GRPC_ADDRESS", "0.0.0.0:50051").rsplit(":", 1)[1]
    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        request = health_pb2.HealthCheckRequest(service="meterusage.v1.MeterUsageService")
        response = health_pb2_grpc.HealthStub(channel).Check(request, timeout=3)
    return response.status == health_pb2.HealthCheckResponse.SERVING


def ingest_ok() -> bool:
    path = os.environ.get("INGEST_HEARTBEAT_FILE", "/tmp/meterusage-ingest.heartbeat")
    age = time.time() - os.stat(path).st_mtime
    return age < float(os.environ.get("INGEST_HEARTBEAT_MAX_AGE", "30"))


CHECKS = {"web": web_ok, "grpc": grpc_ok, "ingest": ingest_ok}


def main() -> int:
    role = os.environ.get("ROLE", "web")
    try:
        healthy = CHECKS.get(role, web_ok)()
    except Exception as exc:  # noqa: BLE001  (any failure is "unhealthy", with its reason)
        print(f"{role}: {exc}", file=sys.stderr)
        return 1
    print(f"{role}: {'healthy' if healthy else 'unhealthy'}")
    return 0 if healthy else 1


if __name__ == "__main__":
    sys.exit(main())
