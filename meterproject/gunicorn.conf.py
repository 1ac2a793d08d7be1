"""gunicorn's settings for the web server, from the environment (scripts/run and the image's web
role both start gunicorn with `-c meterproject/gunicorn.conf.py`)."""
import os
import tempfile

bind = os.environ.get("WEB_BIND", f"127.0.0.1:{os.environ.get('PORT', '8000')}")
workers = int(os.environ.get("WEB_CONCURRENCY", "2"))
threads = int(os.environ.get("WEB_THREADS", "4"))
# Threads, a bounded queue, then 503 at once (see meterproject/web_worker.py).
worker_class = "meterproject.web_worker.SheddingWorker"
# The longest request line gunicorn takes (its default is 4094); longer ones get a problem document.
limit_request_line = 8190
forwarded_allow_ips = os.environ.get("FORWARDED_ALLOW_IPS", "127.0.0.1")
accesslog = "-"
graceful_timeout = int(os.environ.get("WEB_GRACEFUL_TIMEOUT", "20"))

# Metrics of every worker go to files there, for /metrics to add up.
os.environ.setdefault("PROMETHEUS_MULTIPROC_DIR", tempfile.mkdtemp(prefix="meterusage-metrics-"))


def child_exit(server, worker):
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid)
