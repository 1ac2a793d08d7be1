"""Prometheus metrics of `ingest_mqtt`, served with --metrics-address."""
from prometheus_client import Counter, Histogram

MESSAGES = Counter("meterusage_ingest_messages_total", "Messages committed, by outcome.", ["outcome"])
READINGS = Counter("meterusage_ingest_readings_total", "Readings of stored messages, by what the store did.", ["result"])
LAG = Histogram(
    "meterusage_ingest_lag_seconds", "From a batch's first message arriving to the batch being acknowledged.",
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
)


def record(counts, lag: float) -> None:
    MESSAGES.labels("stored").inc(counts.messages - counts.rejected - counts.messages_skipped)
    MESSAGES.labels("rejected").inc(counts.rejected)
    MESSAGES.labels("skipped").inc(counts.messages_skipped)
    for result in ("inserted", "updated", "unchanged", "skipped"):
        READINGS.labels(result).inc(getattr(counts, result))
    LAG.observe(lag)
