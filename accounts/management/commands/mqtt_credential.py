from pathlib import Path

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from accounts.devices import remove_credential, set_credential, usernames
from readings.domain import quoted
from readings.mqtt.consumer import broker_address
from readings.models import Meter


class Command(BaseCommand):
    help = (
        "MQTT credentials in Mosquitto's password file (MQTT_PASSWORD_FILE or --password-file): "
        "`mqtt_credential device METER` (a device that may publish only its meter's readings), "
        "`mqtt_credential consumer USERNAME [--from-mqtt-url]` (ingest_mqtt's own; with --from-mqtt-url the "
        "password MQTT_URL carries rather than a new one), `mqtt_credential remove USERNAME`, "
        "`mqtt_credential list`. A new password is printed alone on the last line, once. "
        "Send the broker SIGHUP to read the file again."
    )

    def add_arguments(self, parser):
        parser.add_argument("--password-file", default=settings.MQTT_PASSWORD_FILE, help="Default: MQTT_PASSWORD_FILE.")
        actions = parser.add_subparsers(dest="action", required=True)
        actions.add_parser("device", help="Credential of a meter's device.").add_argument("meter")
        consumer = actions.add_parser("consumer", help="Credential of ingest_mqtt.")
        consumer.add_argument("username")
        consumer.add_argument(
            "--from-mqtt-url", action="store_true",
            help="The password in MQTT_URL (whose user must be USERNAME), as ingest_mqtt will send it; not printed.",
        )
        actions.add_parser("remove", help="Remove a credential.").add_argument("username")
        actions.add_parser("list", help="The usernames in the file.")

    def handle(self, *args, action, password_file, **options):
        if not password_file:
            raise CommandError("no password file: set MQTT_PASSWORD_FILE or pass --password-file")
        path = Path(password_file)
        if not path.parent.is_dir():
            raise CommandError(f"{path.parent}: no such folder")
        if action == "device":
            name = options["meter"]
            if not Meter.objects.filter(name=name).exists():
                raise CommandError(f"no meter named {quoted(name)}")
            password = set_credential(path, name)
            self.stdout.write(f"Device {name} may publish to meterusage/v1/meters/{name}/readings. Its password, shown once:")
            self.stdout.write(password)
        elif action == "consumer" and options["from_mqtt_url"]:
            username = options["username"]
            try:
                address = broker_address(settings.MQTT_URL)
            except ValueError:
                raise CommandError("--from-mqtt-url: MQTT_URL is not an mqtt:// URL") from None
            if address.username != username or not address.password:
                raise CommandError(f"--from-mqtt-url: MQTT_URL carries no password for {quoted(username)}")
            set_credential(path, username, address.password)
            self.stdout.write(f"Consumer {username}: the password of MQTT_URL.")
        elif action == "consumer":
            password = set_credential(path, options["username"])
            self.stdout.write(f"Consumer {options['username']}: put it in MQTT_URL (mqtt://USER:PASSWORD@host). Its password, shown once:")
            self.stdout.write(password)
        elif action == "remove":
            if not remove_credential(path, options["username"]):
                raise CommandError(f"no credential named {quoted(options['username'])} in {path}")
            self.stdout.write(f"Removed {options['username']}; the broker drops it on SIGHUP.")
        else:
            for username in usernames(path) or ["(none)"]:
                self.stdout.write(username)
