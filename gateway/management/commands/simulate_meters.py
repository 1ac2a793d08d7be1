import time
from datetime import date

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from gateway.simulate import GrpcSender, MqttSender, fleet_names, fleet_readings, missing_meters, paced


class Command(BaseCommand):
    help = (
        "Send generated readings as a fleet of meters would, over MQTT (to ingest_mqtt) or with "
        "gRPC WriteReadings, at a total rate of readings per second. For demos and benches."
    )

    def add_arguments(self, parser):
        parser.add_argument("--meters", type=int, default=10, help="How many meters (default 10).")
        parser.add_argument("--rate", type=float, default=100.0, help="Readings per second, all meters together (default 100).")
        way = parser.add_mutually_exclusive_group()
        way.add_argument("--mqtt", action="store_true", help="Publish to MQTT_URL / --url (the default).")
        way.add_argument("--grpc", action="store_true", help="Call WriteReadings on GRPC_TARGET.")
        until = parser.add_mutually_exclusive_group()
        until.add_argument("--duration", type=float, help="Seconds to run (default: until --count, or 60 s).")
        until.add_argument("--count", type=int, help="Readings to send in all.")
        parser.add_argument("--start", type=date.fromisoformat, default=None, help="Date of the first readings (default today).")
        parser.add_argument("--prefix", default="sim", help="Meters are named PREFIX-001, PREFIX-002, ... (default sim).")
        parser.add_argument("--create", action="store_true", help="Create the meters that do not exist yet.")
        parser.add_argument("--seed", type=int, default=0, help="Random seed of the values (default 0).")
        parser.add_argument("--per-message", type=int, default=1, help="MQTT: readings of a meter per message (default 1).")
        parser.add_argument("--url", default=settings.MQTT_URL, help="MQTT broker (default MQTT_URL).")
        parser.add_argument("--topic", default=settings.MQTT_TOPIC, help="Topic; its '+' becomes the meter name (default MQTT_TOPIC).")
        parser.add_argument("--target", default=settings.GRPC_TARGET, help="gRPC server (default GRPC_TARGET).")
        parser.add_argument("--token", default=settings.GRPC_WRITE_TOKEN, help="gRPC write token (default GRPC_WRITE_TOKEN).")

    def handle(self, *args, meters, rate, grpc, duration, count, start, prefix, create, seed, per_message, url, topic,
               target, token, **options):
        if meters < 1 or rate <= 0 or per_message < 1:
            raise CommandError("--meters, --rate and --per-message must be positive")
        names = fleet_names(prefix, meters)
        missing = missing_meters(names, create=create)
        if missing:
            raise CommandError(
                f"{len(missing)} of the {meters} meters do not exist (first: {missing[0]}): add --create to create them"
            )
        total = count if count is not None else int(rate * (duration or 60.0))
        readings = fleet_readings(names, total=total, start=start or date.today(), seed=seed)
        if grpc:
            sender = GrpcSender(target, token, settings.GRPC_TLS_ROOT_CERT)
            chunk, where = max(1, min(int(rate / 10), 10_000)), f"gRPC {target}"
        else:
            if not url:
                raise CommandError("no broker: set MQTT_URL or give --url mqtt://host:port")
            try:
                sender = MqttSender(url, topic)
            except (ValueError, OSError) as exc:
                raise CommandError(f"cannot reach the MQTT broker: {exc}") from None
            chunk, where = meters * per_message, f"MQTT {url} {topic}"
        began = time.monotonic()
        try:
            sent = paced(readings, rate=rate, duration=duration, chunk=chunk, send=sender.send)
        except KeyboardInterrupt:
            sent = None
        finally:
            sender.close()
        seconds = time.monotonic() - began
        if sent is not None and options["verbosity"] > 0:
            self.stdout.write(f"{sent} readings of {meters} meters sent to {where} in {seconds:.1f} s ({sent / seconds:.0f}/s)")
