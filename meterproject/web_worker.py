"""gunicorn's threaded worker, with two changes: past its capacity it answers 503 at once instead
of queueing without bound, and the errors gunicorn answers itself (a request line or headers too
long, a request that cannot be parsed) are problem documents like every other error of the API."""
import json
import os
from concurrent import futures
from http import HTTPStatus

from gunicorn import util
from gunicorn.workers.gthread import ThreadWorker

from meterproject.metrics import SHED

PROBLEM_CONTENT_TYPE = "application/problem+json"
RETRY_AFTER_SECONDS = 1


def problem_bytes(status: int, detail: str, *, headers: dict | None = None) -> bytes:
    """A whole HTTP/1.1 response carrying an RFC 9457 problem document; the connection closes."""
    reason = HTTPStatus(status).phrase
    body = json.dumps({"type": "about:blank", "title": reason, "status": status, "detail": detail}).encode()
    lines = [f"HTTP/1.1 {status} {reason}", "Connection: close", f"Content-Type: {PROBLEM_CONTENT_TYPE}",
             f"Content-Length: {len(body)}", *(f"{name}: {value}" for name, value in (headers or {}).items())]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


def write_problem(sock, status_int, reason, mesg):
    """Replaces gunicorn's HTML error page."""
    util.write_nonblock(sock, problem_bytes(int(status_int), mesg or reason))


util.write_error = write_problem


class SheddingWorker(ThreadWorker):
    """Requests beyond the threads wait in a queue of WEB_QUEUE_PER_THREAD times the threads; past
    it a request is read and answered 503 with Retry-After by a thread of its own, so the requests
    admitted keep their latency and the rest learn at once to come back."""

    def init_process(self):
        self.queue_limit = self.cfg.threads * int(os.environ.get("WEB_QUEUE_PER_THREAD", "8"))
        self.shed_pool = futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="shed")
        super().init_process()

    def queued(self) -> int:
        return self.tpool._work_queue.qsize()

    def enqueue_req(self, conn):
        if self.queued() < self.queue_limit:
            return super().enqueue_req(conn)
        shed = self.shed_pool.submit(self.shed, conn)
        shed.add_done_callback(lambda fut: self.method_queue.defer(self.finish_request, conn, fut))

    def shed(self, conn) -> bool:
        """Read the request (so that the client reads the answer, not a reset), answer 503."""
        try:
            conn.sock.setblocking(True)
            conn.sock.settimeout(1.0)
            conn.init()
            if next(conn.parser, None) is None:
                return False
            conn.sock.sendall(problem_bytes(
                503, "the server is at capacity; try again shortly",
                headers={"Retry-After": str(RETRY_AFTER_SECONDS)},
            ))
            SHED.inc()
        except Exception:  # noqa: BLE001  (a client that went away or sent garbage is no error here)
            pass
        return False
