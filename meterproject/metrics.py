"""Prometheus metrics: the web server's own, and serving any process's (web, gRPC, MQTT ingest).

The web server's: requests by route, method and status, latency, requests
in flight and shed, and the import runs recorded in the database. With several gunicorn workers,
each writes its figures to PROMETHEUS_MULTIPROC_DIR (set by meterproject/gunicorn.conf.py) and
/metrics adds them up."""
import hmac
import os
import time

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
    start_http_server,
)
from prometheus_client.core import CounterMetricFamily

METHODS = {"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"}

REQUESTS = Counter("http_requests_total", "HTTP requests answered, by route, method and status.", ["route", "method", "status"])
LATENCY = Histogram(
    "http_request_duration_seconds", "Time to answer an HTTP request, by route and method.", ["route", "method"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
IN_FLIGHT = Gauge("http_requests_in_flight", "HTTP requests being answered now.", multiprocess_mode="livesum")
SHED = Counter("http_requests_shed_total", "Requests answered 503 at once because the server was at capacity.")


class MetricsMiddleware:
    """Counts and times every request; the route (the URL pattern, not the path) keeps the
    number of series bounded."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        began = time.perf_counter()
        IN_FLIGHT.inc()
        try:
            response = self.get_response(request)
        finally:
            IN_FLIGHT.dec()
        match = getattr(request, "resolver_match", None)
        route = match.route if match is not None else "unmatched"
        method = request.method if request.method in METHODS else "other"
        REQUESTS.labels(route, method, str(response.status_code)).inc()
        LATENCY.labels(route, method).observe(time.perf_counter() - began)
        return response


class ImportRunCollector:
    """Import and seed runs as the database records them, whichever process ran them."""

    def collect(self):
        from django.db.models import Count, Sum

        from readings.models import ImportRun

        runs = CounterMetricFamily("meterusage_import_runs", "Import and seed runs, by target store and outcome.",
                                   labels=["target", "status"])
        rows = CounterMetricFamily("meterusage_imported_rows", "Rows inserted and updated, and points written, by target.",
                                   labels=["target", "outcome"])
        totals = ImportRun.objects.values("target", "status").annotate(
            runs=Count("id"), inserted=Sum("rows_inserted"), updated=Sum("rows_updated"), points=Sum("points_written"),
        )
        by_target: dict[str, dict[str, int]] = {}
        for total in totals:
            runs.add_metric([total["target"], total["status"]], total["runs"])
            counts = by_target.setdefault(total["target"], {"inserted": 0, "updated": 0, "points": 0})
            for outcome in counts:
                counts[outcome] += total[outcome] or 0
        for target, counts in by_target.items():
            for outcome, value in counts.items():
                rows.add_metric([target, outcome], value)
        yield runs
        yield rows


def exposition() -> bytes:
    """The text of /metrics: this process's metrics (or every worker's), and the import runs."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
    else:
        registry = CollectorRegistry()
        registry.register(_ProcessMetrics())
    registry.register(ImportRunCollector())
    return generate_latest(registry)


class _ProcessMetrics:
    """The default registry's metrics, added to a registry of their own."""

    def collect(self):
        yield from REGISTRY.collect()


def may_read(request, *, public: bool, token: str) -> bool:
    """Anyone when `public`; else staff users, or a request carrying `Bearer <token>`."""
    if public:
        return True
    if getattr(request, "user", None) is not None and request.user.is_active and request.user.is_staff:
        return True
    scheme, _, presented = request.headers.get("Authorization", "").partition(" ")
    return bool(token) and scheme.lower() == "bearer" and hmac.compare_digest(presented.encode(), token.encode())


def serve_metrics(address: str) -> int:
    """Serve /metrics over HTTP on `address` ("127.0.0.1:9464"; port 0 picks one); returns the port."""
    host, _, port = address.rpartition(":")
    server, _thread = start_http_server(int(port), addr=host or "127.0.0.1")
    return server.server_address[1]


CONTENT_TYPE = CONTENT_TYPE_LATEST
