import gc
import signal
import threading

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError
from django.utils import autoreload

from grpc_api.rate_limits import parse_rate
from grpc_api.server import create_server
from meterproject.metrics import serve_metrics


class Command(BaseCommand):
    help = (
        "Serve the meterusage.v1 gRPC API, with grpc.health.v1 and server reflection. "
        "SIGTERM or Ctrl-C reports NOT_SERVING, then stops after in-flight calls (--grace)."
    )
    # Checks run in handle() (and again on every reload with --dev).
    requires_system_checks = []

    def add_arguments(self, parser):
        parser.add_argument(
            "address", nargs="?", default=settings.GRPC_ADDRESS,
            help=f"host:port to listen on (default GRPC_ADDRESS, {settings.GRPC_ADDRESS}).",
        )
        parser.add_argument(
            "--max-workers", type=int, default=10,
            help="Worker threads (default 10); twice as many calls may wait, more get RESOURCE_EXHAUSTED.",
        )
        parser.add_argument(
            "--metrics-address", default=settings.GRPC_METRICS_ADDRESS,
            help="host:port of a Prometheus /metrics endpoint (default GRPC_METRICS_ADDRESS; empty: none).",
        )
        parser.add_argument("--dev", action="store_true", help="Restart when code changes.")
        parser.add_argument("--grace", type=float, default=10.0, help="Seconds calls get to finish on stop.")
        parser.add_argument("--certfile", help="TLS certificate chain (PEM); with --keyfile, serves TLS.")
        parser.add_argument("--keyfile", help="TLS private key (PEM).")

    def handle(self, *args, **options):
        if bool(options["certfile"]) != bool(options["keyfile"]):
            raise CommandError("--certfile and --keyfile go together")
        if options["dev"]:
            autoreload.run_with_reloader(self.serve, **options)
        else:
            self.serve(**options)

    def serve(self, *, address, max_workers, grace, certfile, keyfile, metrics_address, **options):
        self.check(display_num_errors=False)
        tls = None
        if certfile:
            try:
                with open(keyfile, "rb") as key, open(certfile, "rb") as chain:
                    tls = (key.read(), chain.read())
            except OSError as exc:
                raise CommandError(f"cannot read TLS files: {exc}") from None
        rates = {}
        for name in ("GRPC_RATE_PER_ADDRESS", "GRPC_RATE_PER_KEY"):
            try:
                rates[name] = parse_rate(getattr(settings, name))
            except ValueError as exc:
                raise CommandError(f"{name}: {exc}") from None
        try:
            running = create_server(
                address, max_workers=max_workers, tls=tls,
                health_check_seconds=settings.GRPC_HEALTH_CHECK_SECONDS,
                rate_per_address=rates["GRPC_RATE_PER_ADDRESS"], rate_per_key=rates["GRPC_RATE_PER_KEY"],
                rate_exempt_tokens=[*settings.GRPC_AUTH_TOKENS, *settings.GRPC_WRITE_TOKENS],
            )
            metrics = f", metrics on port {serve_metrics(metrics_address)}" if metrics_address else ""
        except OSError as exc:
            raise CommandError(f"{exc} (is the port in use?)") from None
        # What was made to start (Django, the modules, the settings) lives as long as the server:
        # the collector need not walk it again each time calls' short-lived objects trigger it.
        gc.freeze()
        host = address.rsplit(":", 1)[0]
        auth = "callers by bearer credential"
        self.stdout.write(
            f"Serving meterusage.v1 on {host}:{running.port} ({'TLS' if tls else 'plaintext'}, {auth}{metrics}). "
            "Ctrl-C stops it."
        )
        self.stdout.flush()
        stopping = threading.Event()
        if threading.current_thread() is threading.main_thread():
            for signum in (signal.SIGTERM, signal.SIGINT):
                signal.signal(signum, lambda *_: stopping.set())
        stopping.wait()
        self.stdout.write(f"Stopping: NOT_SERVING, finishing calls for up to {grace:g}s ...")
        running.stop(grace)
        self.stdout.write("Stopped.")
