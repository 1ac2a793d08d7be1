"""Devices on MQTT: with the credentials `manage.py mqtt_credential` writes and the broker settings
of deploy/ (mosquitto.conf as compose runs it, and its ACL), a real Mosquitto lets a device publish
only to its own meter's topic, and the consumer (with a credential of its own) stores only that."""
import base64
import os
import re
import signal
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

# What is checked is the broker's ACL and the credentials; the consumer's writes into each engine
# are test_ingest_mqtt's.
pytestmark = [pytest.mark.django_db, pytest.mark.any_engine]
TOPIC = "meterusage/v1/meters/{}/readings"
DEVICE, OTHER = "drain-001", "drain-002"  # meters the store fixture makes


def credential(store, password_file: Path, *args: str) -> str:
    done = subprocess.run(
        [sys.executable, "manage.py", "mqtt_credential", "--password-file", str(password_file), *args],
        cwd=REPO, env=store.env, check=True, capture_output=True, text=True,
    )
    return done.stdout.splitlines()[-1]


def deployed_settings(paths: dict[str, Path]) -> str:
    """deploy/mosquitto.conf's lines with its container paths replaced by `paths`, less its
    listener (start_mosquitto gives the test broker its own port)."""
    lines = []
    for line in (REPO / "deploy" / "mosquitto.conf").read_text().splitlines():
        if line.startswith("listener "):
            continue
        for path in re.findall(r"/mosquitto/\S*", line):
            assert path in paths, f"deploy/mosquitto.conf names {path}: give the test broker a place for it"
            line = line.replace(path, str(paths[path]))
        lines.append(line)
    return "\n".join(lines) + "\n"


@pytest.fixture
def guarded_broker(tmp_path):
    """Starts (`start()`, once the password file holds its users) a Mosquitto with the settings of
    deploy/mosquitto.conf: only the password file's users, under deploy/mosquitto-acl.conf."""
    passwords = tmp_path / "passwd"
    passwords.touch()
    (tmp_path / "data").mkdir()
    broker = SimpleNamespace(passwords=passwords, running=None)

    def start():
        broker.running = start_mosquitto(tmp_path, deployed_settings({
            "/mosquitto/passwords/passwd": passwords,
            "/mosquitto/config/mosquitto-acl.conf": REPO / "deploy" / "mosquitto-acl.conf",
            "/mosquitto/data/": f"{tmp_path / 'data'}/",
        }))
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


def connects(port: int, username: str | None, password: str | None) -> bool:
    """Whether the broker accepts this client's connect."""
    device = Device(port, username, password)
    device.close()
    return not device.connected.is_failure


def test_a_device_publishes_only_to_its_own_meter_and_the_store_holds_only_that(store, guarded_broker, tmp_path):  # noqa: F811
    # The consumer's credential as compose writes it: the entry point's mqtt-passwords role, with
    # the password of ingest_mqtt's MQTT_URL.
    consumer_password = "consumer-" + uuid.uuid4().hex
    url = f"mqtt://meterusage-ingest:{consumer_password}@127.0.0.1:{{port}}"
    subprocess.run(
        [str(REPO / "scripts" / "docker-entrypoint"), "mqtt-passwords"], cwd=REPO, check=True, capture_output=True,
        env={**store.env, "PYTHON": sys.executable, "MQTT_URL": url.format(port=1883),
             "MQTT_PASSWORD_FILE": str(guarded_broker.passwords)},
    )
    device_password = credential(store, guarded_broker.passwords, "device", DEVICE)
    if os.geteuid() == 0:
        # Handed to the broker's user, and kept so by a later rewrite.
        assert (guarded_broker.passwords.stat().st_uid, guarded_broker.passwords.stat().st_gid) == (1883, 1883)
    guarded_broker.start()
    consumer = start_consumer(store, SimpleNamespace(url=url.format(port=guarded_broker.port)), TOPIC.format("+"),
                              f"ingest-{uuid.uuid4().hex[:8]}", tmp_path / "consumer.log")
    try:
        assert not connects(guarded_broker.port, None, None)  # anonymous
        assert not connects(guarded_broker.port, DEVICE, device_password + "x")

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
    # A device added while the broker runs is let in once the broker has had SIGHUP.
    other_password = credential(store, guarded_broker.passwords, "device", OTHER)
    assert not connects(guarded_broker.port, OTHER, other_password)
    guarded_broker.running.process.send_signal(signal.SIGHUP)
    wait_for(lambda: connects(guarded_broker.port, OTHER, other_password), 10)
    # compose's health check of the broker reads its version with the consumer's credential.
    assert broker_version(guarded_broker.port, "meterusage-ingest", consumer_password).startswith(b"mosquitto version ")


def broker_version(port: int, username: str, password: str) -> bytes:
    """$SYS/broker/version (a retained message), as compose's health check of the broker reads it."""
    received = []
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"health-{uuid.uuid4().hex[:8]}")
    client.username_pw_set(username, password)
    client.on_connect = lambda client, data, flags, reason, props: client.subscribe("$SYS/broker/version")
    client.on_message = lambda client, data, message: received.append(message.payload)
    client.connect("127.0.0.1", port)
    client.loop_start()
    try:
        wait_for(lambda: received, 10)
    finally:
        client.disconnect()
        client.loop_stop()
    return received[0]


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


def test_the_consumer_credential_from_mqtt_url_needs_its_user_and_a_password(store, tmp_path):  # noqa: F811
    passwords = tmp_path / "passwd"
    def with_url(url):
        return SimpleNamespace(env={**store.env, "MQTT_URL": url})

    for url in ("mqtt://someone-else:secret@broker", "mqtt://meterusage-ingest@broker"):
        with pytest.raises(subprocess.CalledProcessError) as refused:
            credential(with_url(url), passwords, "consumer", "meterusage-ingest", "--from-mqtt-url")
        assert "--from-mqtt-url: MQTT_URL" in refused.value.stderr, url
    ingest = with_url("mqtt://meterusage-ingest:s3cret@broker:1883")
    assert credential(ingest, passwords, "consumer", "meterusage-ingest", "--from-mqtt-url") == (
        "Consumer meterusage-ingest: the password of MQTT_URL."
    )
    username, _, encoded = passwords.read_text().strip().partition(":")
    salt = base64.b64decode(encoded.split("$")[3])
    assert passwords.read_text() == password_line("meterusage-ingest", "s3cret", salt=salt) + "\n"
