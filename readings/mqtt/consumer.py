"""The MQTT connection of `ingest_mqtt`: a persistent session with manual acknowledgements, which
takes batches of messages, has them committed (`batches.store_batch`), and acknowledges each batch
only after its commit, in order and on the connection that delivered it."""
import logging
import queue
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote, urlsplit

from django.db import DatabaseError, close_old_connections, connections

from readings import ingest_metrics as metrics
from readings.domain import SourceUnavailable
from readings.mqtt.batches import (
    BACKLOG_BATCH_MESSAGES, BATCH_MESSAGES, BATCH_WAIT_SECONDS, Message, meter_level, store_batch, take_batch,
)
from readings.writes.counts import WriteCounts

# The name the consumer has always logged under: its lines are what operators grep for.
logger = logging.getLogger("readings.ingest")

HEARTBEAT_SECONDS = 2.0
RETRY_SECONDS = (0.5, 30.0)  # first and longest wait before a failed commit is tried again
DEFAULT_PORTS = {"mqtt": 1883, "mqtts": 8883}


@dataclass(frozen=True)
class BrokerAddress:
    host: str
    port: int
    tls: bool = False
    username: str | None = None
    password: str | None = None


def broker_address(url: str) -> BrokerAddress:
    """mqtt://[user:pass@]host[:port] (or mqtts:// for TLS) as its parts; ValueError otherwise."""
    parts = urlsplit(url)
    if parts.scheme not in DEFAULT_PORTS or not parts.hostname:
        raise ValueError(f"MQTT URL {url!r}: expected mqtt://[user:password@]host[:port] (or mqtts://)")
    return BrokerAddress(
        parts.hostname, parts.port or DEFAULT_PORTS[parts.scheme], parts.scheme == "mqtts",
        unquote(parts.username) if parts.username else None, unquote(parts.password) if parts.password else None,
    )


@dataclass
class ConsumerOptions:
    url: str
    topic: str
    client_id: str
    create_meters: bool = False
    batch_messages: int = BATCH_MESSAGES
    batch_wait: float = BATCH_WAIT_SECONDS
    backlog_messages: int = BACKLOG_BATCH_MESSAGES  # a batch at most while more wait
    log_every: float = 60.0
    heartbeat_file: str = ""
    session_expiry: int = 7 * 24 * 3600


class Consumer:
    """Subscribes with a persistent session and manual acknowledgements; `run` blocks until `stop`."""

    def __init__(self, options: ConsumerOptions):
        self.options = options
        self.address = broker_address(options.url)
        self.level = meter_level(options.topic)
        self.inbox: queue.Queue[Message] = queue.Queue()
        self.stopping = threading.Event()
        self.connection = 0  # counts connections; 0 while none is up
        self.connected = False
        self.window = WriteCounts()  # since the last log line
        self.window_lag = 0.0
        self.client = self._client()

    def _client(self):
        import paho.mqtt.client as mqtt
        from paho.mqtt.properties import Properties
        from paho.mqtt.packettypes import PacketTypes

        client = mqtt.Client(
            mqtt.CallbackAPIVersion.VERSION2, client_id=self.options.client_id, protocol=mqtt.MQTTv5, manual_ack=True,
        )
        if self.address.username is not None:
            client.username_pw_set(self.address.username, self.address.password)
        if self.address.tls:
            client.tls_set()
        client.reconnect_delay_set(min_delay=1, max_delay=30)
        client.on_connect = self._on_connect
        client.on_connect_fail = self._on_connect_fail
        client.on_disconnect = self._on_disconnect
        client.on_subscribe = self._on_subscribe
        client.on_message = self._on_message
        self.connect_properties = Properties(PacketTypes.CONNECT)
        self.connect_properties.SessionExpiryInterval = self.options.session_expiry
        # The broker may have this many messages unacknowledged with us (MQTT 5's Receive Maximum,
        # which Mosquitto 2 follows whatever its max_inflight_messages): enough for two of the
        # largest batches, so that the next one arrives while one is being committed.
        largest = max(self.options.batch_messages, self.options.backlog_messages)
        self.connect_properties.ReceiveMaximum = min(65535, 2 * largest)
        return client

    # Callbacks run in paho's network thread.
    def _on_connect(self, client, userdata, flags, reason_code, properties):
        if reason_code.is_failure:
            logger.error("MQTT broker %s:%s refused the connection: %s", self.address.host, self.address.port, reason_code)
            return
        self.connection += 1
        self.connected = True
        logger.info(
            "connected to %s:%s as %s (session %s)", self.address.host, self.address.port, self.options.client_id,
            "resumed" if flags.session_present else "new",
        )
        from paho.mqtt.subscribeoptions import SubscribeOptions

        client.subscribe(self.options.topic, options=SubscribeOptions(qos=1))

    def _on_connect_fail(self, client, userdata):
        logger.warning("cannot reach the MQTT broker at %s:%s; trying again", self.address.host, self.address.port)

    def _on_subscribe(self, client, userdata, mid, reason_codes, properties):
        if any(code.is_failure for code in reason_codes):
            logger.error("subscription to %s refused: %s", self.options.topic, reason_codes)
        else:
            logger.info("subscribed to %s", self.options.topic)
            self._touch_heartbeat()

    def _on_disconnect(self, client, userdata, flags, reason_code, properties):
        self.connected = False
        if not self.stopping.is_set():
            logger.warning("disconnected from the MQTT broker (%s); reconnecting", reason_code)

    def _on_message(self, client, userdata, msg):
        self.inbox.put(Message(msg.topic, msg.payload, msg.mid, msg.qos, connection=self.connection, retained=bool(msg.retain)))

    def stop(self) -> None:
        self.stopping.set()

    def run(self) -> None:
        self.client.connect_async(
            self.address.host, self.address.port, keepalive=30, clean_start=False, properties=self.connect_properties,
        )
        self.client.loop_start()
        last_log = last_beat = time.monotonic()
        try:
            while not self.stopping.is_set():
                batch = self._take(block=True)
                if batch:
                    self._commit_and_ack(batch)
                now = time.monotonic()
                if self.connected and now - last_beat >= HEARTBEAT_SECONDS:
                    self._touch_heartbeat()
                    last_beat = now
                if now - last_log >= self.options.log_every:
                    self._log_counts()
                    last_log = now
            # Stopping: what is already here is committed and acknowledged; the rest the broker
            # delivers again to the next consumer.
            while batch := self._take(block=False):
                if not self._commit_and_ack(batch):
                    break
            self._log_counts()
        finally:
            self.client.disconnect()  # sent after the acknowledgements already queued
            self.client.loop_stop()
            if self.options.heartbeat_file:
                Path(self.options.heartbeat_file).unlink(missing_ok=True)

    def _take(self, *, block: bool) -> list[Message]:
        return take_batch(
            self.inbox, block=block, batch_messages=self.options.batch_messages, batch_wait=self.options.batch_wait,
            backlog_messages=self.options.backlog_messages,
        )

    def _commit_and_ack(self, batch: list[Message]) -> bool:
        """Commit the batch, trying again while the store is unreachable, then acknowledge it.
        False when stopped before it could be committed (it is not acknowledged then)."""
        wait = RETRY_SECONDS[0]
        while True:
            close_old_connections()
            try:
                counts = store_batch(batch, level=self.level, create_meters=self.options.create_meters)
                break
            except (DatabaseError, SourceUnavailable) as exc:
                logger.warning("could not commit %d messages (%s); trying again in %.1f s", len(batch), exc, wait)
                for connection in connections.all():
                    connection.close_if_unusable_or_obsolete()
                if self.stopping.wait(wait):
                    return False
                wait = min(wait * 2, RETRY_SECONDS[1])
        # In the order they came (QoS 1 wants acknowledgements in order), and only on the
        # connection that delivered them: after a reconnect the broker sends them again.
        current = self.connection
        for message in batch:
            if message.qos and message.connection == current:
                self.client.ack(message.mid, message.qos)
        self._count(counts, time.monotonic() - batch[0].received)
        return True

    def _count(self, counts: WriteCounts, lag: float) -> None:
        self.window.add(counts)
        self.window_lag = max(self.window_lag, lag)
        metrics.record(counts, lag)

    def _log_counts(self) -> None:
        w = self.window
        logger.info(
            "ingest: %d messages, %d readings (%d inserted, %d updated, %d unchanged, %d skipped), "
            "%d rejected; lag %.2f s; %d waiting",
            w.messages, w.readings, w.inserted, w.updated, w.unchanged, w.skipped, w.rejected, self.window_lag,
            self.inbox.qsize(),
        )
        self.window, self.window_lag = WriteCounts(), 0.0

    def _touch_heartbeat(self) -> None:
        if self.options.heartbeat_file:
            Path(self.options.heartbeat_file).touch()
