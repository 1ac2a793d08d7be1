import signal
import threading

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from meterproject.metrics import serve_metrics
from readings.mqtt.batches import BACKLOG_BATCH_MESSAGES, BATCH_MESSAGES, BATCH_WAIT_SECONDS
from readings.mqtt.consumer import Consumer, ConsumerOptions


class Command(BaseCommand):
    help = (
        "Store live readings published over MQTT (QoS 1, persistent session). A message is "
        "acknowledged once its readings are committed; unusable ones are kept as rejected "
        "messages. SIGTERM or Ctrl-C commits and acknowledges what is in hand, then stops."
    )

    def add_arguments(self, parser):
        parser.add_argument("--url", default=settings.MQTT_URL, help="mqtt://[user:password@]host[:port] (default MQTT_URL).")
        parser.add_argument("--topic", default=settings.MQTT_TOPIC, help="Topic filter; its '+' is the meter name (default MQTT_TOPIC).")
        parser.add_argument("--client-id", default=settings.MQTT_CLIENT_ID, help="Client id of the session (default MQTT_CLIENT_ID).")
        parser.add_argument("--batch", type=int, default=BATCH_MESSAGES, help=f"Messages per transaction at most (default {BATCH_MESSAGES}).")
        parser.add_argument(
            "--batch-wait", type=float, default=BATCH_WAIT_SECONDS,
            help=f"Seconds a batch waits for more messages after its first (default {BATCH_WAIT_SECONDS}).",
        )
        parser.add_argument(
            "--backlog-batch", type=int, default=BACKLOG_BATCH_MESSAGES,
            help=f"Messages per transaction at most while more are waiting (default {BACKLOG_BATCH_MESSAGES}; at least --batch).",
        )
        parser.add_argument("--log-every", type=float, default=60.0, help="Seconds between lines of counts (default 60).")
        parser.add_argument(
            "--heartbeat-file", default=settings.INGEST_HEARTBEAT_FILE,
            help="File touched every few seconds while connected (default INGEST_HEARTBEAT_FILE).",
        )
        parser.add_argument(
            "--metrics-address", default=settings.INGEST_METRICS_ADDRESS,
            help="host:port of a Prometheus /metrics endpoint (default INGEST_METRICS_ADDRESS; empty: none).",
        )

    def handle(self, *args, url, topic, client_id, batch, batch_wait, backlog_batch, log_every, heartbeat_file, metrics_address, **options):
        if not url:
            raise CommandError("no broker: set MQTT_URL or give --url mqtt://host:port")
        if batch < 1:
            raise CommandError("--batch must be at least 1")
        try:
            consumer = Consumer(ConsumerOptions(
                url=url, topic=topic, client_id=client_id, create_meters=settings.INGEST_CREATE_METERS,
                batch_messages=batch, batch_wait=batch_wait, backlog_messages=max(batch, backlog_batch),
                log_every=log_every, heartbeat_file=heartbeat_file,
                session_expiry=settings.MQTT_SESSION_EXPIRY_SECONDS,
            ))
        except ValueError as exc:
            raise CommandError(str(exc)) from None
        if metrics_address:
            try:
                self.stdout.write(f"Metrics on port {serve_metrics(metrics_address)}")
            except OSError as exc:
                raise CommandError(f"{exc} (is the port in use?)") from None
        if threading.current_thread() is threading.main_thread():
            for signum in (signal.SIGTERM, signal.SIGINT):
                signal.signal(signum, lambda *_: consumer.stop())
        consumer.run()
        self.stdout.write("Stopped: every message received is committed and acknowledged.")
