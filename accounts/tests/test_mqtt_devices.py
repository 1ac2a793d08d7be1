"""Devices on MQTT: with the credentials `manage.py mqtt_credential` writes and the ACL in deploy/,
a real Mosquitto lets a device publish only to its own meter's topic, and the consumer (with a
credential of its own) stores only that."""
import subprocess
import sys
import uuid
from pathlib import Path
from types import SimpleNamespace

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.properties import Properties
from paho.mqtt.packettypes import PacketTypes

from accounts.devices import password_line
from readings.tests.test_ingest_mqtt import start_consumer, store  # noqa: F401  (the module's store fixture)
from testing.helpers import REPO, wait_for
from testing.stores import start_mosquitto
from testing.servers import stop_process

pytestmark = pytest.mark.django_db
TOPIC = "meterusage/v1/meters/{}/readings"
DEVICE, OTHER = "drain-001", "drain-002"  # meters the store fixture makes


def credential(store, password_file: Path, *args: str) -> str:
    done = subprocess.run(
        [sys.executable, "manage.py", "mqtt_credential", "--password-file", str(password_file), *args],
        cwd=REPO, env=store.env, check=True, capture_output=True, text=True,
    )
    return done.stdout.splitlines()[-1]


@pytest.fixture
def guarded_broker(tmp_path):
    """Starts (`start()`, once the password file holds its users) a Mosquitto that takes only the
    password file's users, under deploy/mosquitto-acl.conf."""
    passwords = tmp_path / "passwd"
    passwords.touch()
    broker = SimpleNamespace(passwords=passwords, running=None)

    def start():
        broker.running = start_mosquitto(tmp_path, (
            f"allow_anonymous false\npassword_file {passwords}\nacl_file {REPO / 'deploy' / 'mosquitto-acl.conf'}\n"
        ))
        broker.port = broker.running.port

    broker.start = start
    yield broker
    if broker.running is not None:
        broker.running.process.terminate()
        broker.running.process.wait(timeout=10)


class Device:
    """An MQTT 5 client that notes the broker's answer to each connect and publish."""

    def __init__(self, port: int, username: str | None, password: str | None):
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"dev-{uuid.uuid4().hex[:8]}",
                                  protocol=mqtt.MQTTv5)
        if username is not None:
            self.client.username_pw_set(username, password)
        self.connected, self.acks = None, {}
        self.client.on_connect = lambda client, data, flags, reason, props: setattr(self, "connected", reason)
        self.client.on_publish = lambda client, data, mid, reason, props: self.acks.__setitem__(mid, reason)
        self.client.connect("127.0.0.1", port, properties=Properties(PacketTypes.CONNECT))
        self.client.loop_start()
        wait_for(lambda: self.connected is not None, 10)

    def publish(self, meter: str, payload: bytes):
        """The broker's reason code for a QoS 1 publish to `meter`'s topic."""
        info = self.client.publish(TOPIC.format(meter), payload, qos=1)
        wait_for(lambda: info.mid in self.acks, 10)
        return self.acks[info.mid]

    def close(self):
        self.client.disconnect()
        self.client.loop_stop()


def test_a_device_publishes_only_to_its_own_meter_and_the_store_holds_only_that(store, guarded_broker, tmp_path):  # noqa: F811
    device_password = credential(store, guarded_broker.passwords, "device", DEVICE)
    consumer_password = credential(store, guarded_broker.passwords, "consumer", "meterusage-ingest")
    guarded_broker.start()
    url = f"mqtt://meterusage-ingest:{consumer_password}@127.0.0.1:{guarded_broker.port}"
    consumer = start_consumer(store, SimpleNamespace(url=url), TOPIC.format("+"), f"ingest-{uuid.uuid4().hex[:8]}",
                              tmp_path / "consumer.log")
    try:
        anonymous = Device(guarded_broker.port, None, None)
        assert anonymous.connected.is_failure
        wrong = Device(guarded_broker.port, DEVICE, device_password + "x")
        assert wrong.connected.is_failure

        device = Device(guarded_broker.port, DEVICE, device_password)
        assert not device.connected.is_failure
        refused = device.publish(OTHER, b'{"time": "2024-06-01 00:00:00", "value": 66}')
        stored = device.publish(DEVICE, b'{"time": "2024-06-01 00:00:00", "value": 7}')
        device.close()
        assert refused.is_failure and refused.getName() == "Not authorized"
        assert not stored.is_failure
        wait_for(lambda: store.readings_by_meter(DEVICE) == {DEVICE: (1, 7.0)}, 30)
    finally:
        stop_process(consumer)
    assert store.readings_by_meter(OTHER) == {}


def test_credentials_are_written_as_mosquitto_passwd_writes_them(tmp_path):
    """The line for a known salt matches what Mosquitto's own tool derives (checked by the broker
    above; here the format: $7$, 101 iterations, base64 salt and PBKDF2-SHA512)."""
    line = password_line("meter-1", "secret", salt=b"0123456789ab")
    username, _, encoded = line.partition(":")
    kind, iterations, salt, digest = encoded.split("$")[1:]
    assert (username, kind, iterations, salt) == ("meter-1", "7", "101", "MDEyMzQ1Njc4OWFi")
    assert len(digest) == 88


def test_mqtt_credential_refuses_an_unknown_meter_and_removes_users(store, tmp_path):  # noqa: F811
    passwords = tmp_path / "passwd"
    with pytest.raises(subprocess.CalledProcessError) as refused:
        credential(store, passwords, "device", "no-such-meter")
    assert "no meter named 'no-such-meter'" in refused.value.stderr
    credential(store, passwords, "device", DEVICE)
    credential(store, passwords, "device", DEVICE)  # a new password replaces the old line
    assert credential(store, passwords, "list") == DEVICE
    assert len(passwords.read_text().splitlines()) == 1
    credential(store, passwords, "remove", DEVICE)
    assert credential(store, passwords, "list") == "(none)"
