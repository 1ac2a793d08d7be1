"""Prometheus metrics of the gRPC server (served by meterproject.metrics.serve_metrics)."""
from prometheus_client import Counter, Gauge, Histogram

HANDLED = Counter("grpc_server_handled_total", "RPCs finished, by method and status code.", ["grpc_method", "grpc_code"])
HANDLING = Histogram(
    "grpc_server_handling_seconds", "Time to answer an RPC (a stream: until its last message).", ["grpc_method"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)
REFUSED = Counter("grpc_server_refused_total", "Calls refused at once with RESOURCE_EXHAUSTED: the worker pool was full.")
IN_FLIGHT = Gauge("grpc_server_in_flight", "RPCs being answered now.")
STORE_ERRORS = Counter("meterusage_store_errors_total", "Calls that found a store unavailable, by store.", ["store"])

WATCH_START_BATCHES = Histogram(
    "meterusage_watch_start_batch_size", "Watches started together in one database job (a burst's starts share one).",
    buckets=(1, 2, 5, 10, 25, 50, 100, 250, 500),
)
