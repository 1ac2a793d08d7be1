"""Live readings from MQTT: messages turned into writes, committed in batches, acknowledged after.

A message is `{"time": ..., "value": ...}` or `{"readings": [{"time": ..., "value": ...}, ...]}`
on `.../meters/<meter>/readings`; its rows are cleaned by the rules of a file import. Messages are
taken in batches; each is cleaned alone (one bad message never spoils the others), the good ones
are stored with `store_writes` and the bad ones recorded as RejectedMessage rows in the same
transaction, and only then is every message of the batch acknowledged. A consumer stopped at any
moment therefore loses nothing: what it had not acknowledged the broker delivers again, and a
message delivered twice changes nothing (upsert; a rejection is recorded once per payload).
"""
import hashlib
import json
import logging
import queue
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import unquote, urlsplit

from django.db import DatabaseError, close_old_connections, connections, transaction

from readings import ingest_metrics as metrics
from readings.domain import InvalidArgument, MeterNotFound, SourceUnavailable
from readings.models import Meter, RejectedMessage
from readings.writes import (
    RowsIn,
    RowsInvalid,
    WriteCounts,
    clean_write,
    clean_writes_together,
    meters_for_write,
    store_writes,
)

logger = logging.getLogger(__name__)

BATCH_MESSAGES = 500
BATCH_WAIT_SECONDS = 0.05
# Readings of one message; a file of more is an import, not a live message.
MAX_MESSAGE_READINGS = 10_000
HEARTBEAT_SECONDS = 2.0
RETRY_SECONDS = (0.5, 30.0)  # first and longest wait before a failed commit is tried again
DEFAULT_PORTS = {"mqtt": 1883, "mqtts": 8883}


class MessageRejected(Exception):
    """A message that cannot be used, with the reason kept in its RejectedMessage."""


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


def meter_level(topic_filter: str) -> int:
    """Which level of a topic names the meter: the one the filter's single `+` stands for."""
    levels = topic_filter.split("/")
    if levels.count("+") != 1 or "#" in levels:
        raise ValueError(f"MQTT topic {topic_filter!r}: one '+' stands for the meter name, and no '#'")
    return levels.index("+")


def meter_of_topic(topic: str, level: int) -> str:
    levels = topic.split("/")
    return levels[level] if level < len(levels) else ""


def parse_payload(meter_name: str, payload: bytes) -> RowsIn:
    """The readings of one message as rows of its meter; MessageRejected when its shape is wrong.
    Times and values are checked later, by the rules of a file."""
    try:
        document = json.loads(payload.decode("utf-8"))
    except UnicodeDecodeError:
        raise MessageRejected("payload is not UTF-8 text") from None
    except json.JSONDecodeError as exc:
        raise MessageRejected(f"payload is not JSON: {exc}") from None
    if not isinstance(document, dict):
        raise MessageRejected(f"payload is a JSON {_json_kind(document)}, not an object with time and value, or readings")
    if "readings" in document:
        readings = document["readings"]
        if not isinstance(readings, list):
            raise MessageRejected(f"readings is a JSON {_json_kind(readings)}, not an array")
        if not readings:
            raise MessageRejected("readings is empty")
        if len(readings) > MAX_MESSAGE_READINGS:
            raise MessageRejected(f"{len(readings)} readings in one message; at most {MAX_MESSAGE_READINGS}")
        where = "readings[{}]"
    else:
        readings, where = [document], "payload"
    times, values = [], []
    for index, reading in enumerate(readings):
        place = where.format(index)
        if not isinstance(reading, dict) or "time" not in reading or "value" not in reading:
            raise MessageRejected(f"{place} is not an object with time and value")
        if not isinstance(reading["time"], str):
            raise MessageRejected(f"{place}: time is a JSON {_json_kind(reading['time'])}, not a string")
        if isinstance(reading["value"], (dict, list)):
            raise MessageRejected(f"{place}: value is a JSON {_json_kind(reading['value'])}, not a number")
        times.append(reading["time"])
        values.append(reading["value"])
    return RowsIn(meter_name, times, values)


def _json_kind(value) -> str:
    kinds = {dict: "object", list: "array", str: "string", bool: "boolean", type(None): "null"}
    return kinds.get(type(value), "number")


@dataclass
class Message:
    topic: str
    payload: bytes
    mid: int = 0
    qos: int = 1
    received: float = field(default_factory=time.monotonic)
    # Which connection delivered it: acknowledgements go back on that connection only.
    connection: int = 0


@dataclass
class BatchCounts:
    messages: int = 0
    inserted: int = 0
    updated: int = 0
    unchanged: int = 0
    skipped: int = 0
    rejected: int = 0

    @property
    def readings(self) -> int:
        return self.inserted + self.updated + self.unchanged + self.skipped

    def add(self, other: "BatchCounts") -> None:
        for name in ("messages", "inserted", "updated", "unchanged", "skipped", "rejected"):
            setattr(self, name, getattr(self, name) + getattr(other, name))


def ingest_batch(messages: list[Message], *, level: int, create_meters: bool, channel: str = "mqtt") -> BatchCounts:
    """Clean each message, then store the good ones and record the bad ones in one transaction.
    A database error propagates (nothing is committed then)."""
    rejections: list[RejectedMessage] = []
    parsed: list[tuple[Message, RowsIn]] = []
    for message in messages:
        name = meter_of_topic(message.topic, level)
        try:
            parsed.append((message, parse_payload(name, message.payload)))
        except MessageRejected as exc:
            rejections.append(rejection(message, name, str(exc), channel))
    meters = _meters({rows.meter_name for _, rows in parsed}, create_meters)
    by_meter: dict[str, list[tuple[Message, RowsIn]]] = {}
    for message, rows in parsed:
        meter = meters[rows.meter_name]
        if isinstance(meter, str):
            rejections.append(rejection(message, rows.meter_name, meter, channel))
        else:
            by_meter.setdefault(rows.meter_name, []).append((message, rows))
    writes = []
    for name, entries in by_meter.items():
        # A meter's messages are cleaned in one pass; only when one of them holds an invalid row
        # is each cleaned on its own, to reject just that one.
        together = clean_writes_together(meters[name], [rows for _, rows in entries])
        if together is not None:
            writes.append(together)
            continue
        for message, rows in entries:
            try:
                writes.append(clean_write(meters[name], rows))
            except RowsInvalid as exc:
                reason = "; ".join(f"reading {p.line}: {p.reason} (value {p.value!r})" for _, p in exc.problems)
                rejections.append(rejection(message, rows.meter_name, reason, channel))
    with transaction.atomic():
        counts = store_writes(writes) if writes else WriteCounts()
        # A rejection committed before (its acknowledgement was lost) is not recorded again.
        RejectedMessage.objects.bulk_create(rejections, ignore_conflicts=True)
    return BatchCounts(len(messages), counts.inserted, counts.updated, counts.unchanged, counts.skipped, len(rejections))


def _meters(names: set[str], create: bool) -> dict[str, Meter | str]:
    """Each meter named, or why a message for it cannot be used."""
    try:
        return dict(meters_for_write(sorted(names), create=create))
    except (MeterNotFound, InvalidArgument):
        pass
    found: dict[str, Meter | str] = {}
    for name in names:
        try:
            found[name] = meters_for_write([name], create=create)[name]
        except MeterNotFound as exc:
            found[name] = f"{exc} (INGEST_CREATE_METERS is off)"
        except InvalidArgument as exc:
            found[name] = "; ".join(v.description for v in exc.violations)
    return found


def rejection(message: Message, meter_name: str, reason: str, channel: str) -> RejectedMessage:
    excerpt = message.payload[: RejectedMessage.EXCERPT_CHARS * 4].decode("utf-8", "replace")
    return RejectedMessage(
        channel=channel, topic=message.topic[:500], meter_name=meter_name[:200],
        payload_excerpt=excerpt[: RejectedMessage.EXCERPT_CHARS], payload_size=len(message.payload),
        payload_sha256=hashlib.sha256(message.payload).hexdigest(), reason=reason,
    )


def store_batch(messages: list[Message], *, level: int, create_meters: bool) -> BatchCounts:
    """ingest_batch, and when a batch fails for a reason other than the store being unreachable,
    each message alone: one that still fails is rejected with its error, so that it cannot hold
    back the others for ever. Unreachable stores propagate: the caller waits and tries again."""
    try:
        return ingest_batch(messages, level=level, create_meters=create_meters)
    except (DatabaseError, SourceUnavailable):
        raise
    except Exception as exc:
        if len(messages) == 1:
            logger.exception("message on %s could not be stored; recorded as rejected", messages[0].topic)
            return _reject_alone(messages[0], level, f"could not be stored: {type(exc).__name__}: {exc}")
        logger.exception("a batch of %d messages failed; storing them one by one", len(messages))
    total = BatchCounts()
    for message in messages:
        total.add(store_batch([message], level=level, create_meters=create_meters))
    return total


def _reject_alone(message: Message, level: int, reason: str) -> BatchCounts:
    with transaction.atomic():
        RejectedMessage.objects.bulk_create(
            [rejection(message, meter_of_topic(message.topic, level), reason, "mqtt")], ignore_conflicts=True
        )
    return BatchCounts(messages=1, rejected=1)


@dataclass
class ConsumerOptions:
    url: str
    topic: str
    client_id: str
    create_meters: bool = False
    batch_messages: int = BATCH_MESSAGES
    batch_wait: float = BATCH_WAIT_SECONDS
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
        self.window = BatchCounts()  # since the last log line
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
        # The broker may have this many messages unacknowledged with us: enough for two batches.
        self.connect_properties.ReceiveMaximum = min(65535, 2 * self.options.batch_messages)
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
        self.inbox.put(Message(msg.topic, msg.payload, msg.mid, msg.qos, connection=self.connection))

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
        """Up to batch_messages messages: the first, and what arrives within batch_wait of it."""
        try:
            first = self.inbox.get(timeout=0.25) if block else self.inbox.get_nowait()
        except queue.Empty:
            return []
        batch = [first]
        deadline = time.monotonic() + self.options.batch_wait
        while len(batch) < self.options.batch_messages:
            try:
                if block:
                    batch.append(self.inbox.get(timeout=max(0.0, deadline - time.monotonic())))
                else:
                    batch.append(self.inbox.get_nowait())
            except queue.Empty:
                break
        return batch

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

    def _count(self, counts: BatchCounts, lag: float) -> None:
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
        self.window, self.window_lag = BatchCounts(), 0.0

    def _touch_heartbeat(self) -> None:
        if self.options.heartbeat_file:
            Path(self.options.heartbeat_file).touch()
