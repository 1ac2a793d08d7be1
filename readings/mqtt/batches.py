"""MQTT messages as received, taken in batches, parsed and committed: each message is cleaned
alone, the good ones stored in one transaction with the rejections of the bad ones."""
import hashlib
import logging
import queue
import time
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import NoReturn

import numpy as np
import orjson
from django.db import DatabaseError, transaction

from readings.domain import InvalidArgument, MeterNotFound, SourceUnavailable, WriteBy, json_document, quoted
from readings.models import Meter, Reading, RejectedMessage
from readings.writes.counts import WriteCounts
from readings.writes.live import (
    CleanWrite,
    RowsIn,
    RowsInvalid,
    clean_write,
    clean_writes_together,
    meters_for_write,
    store_writes,
)
from readings.writes.rows import Code, RowProblem

# The name the consumer has always logged under: its lines are what operators grep for.
logger = logging.getLogger("readings.ingest")

BATCH_MESSAGES = 500
BATCH_WAIT_SECONDS = 0.05
# Messages of one transaction at most while a backlog waits (after a stop, or a burst): a commit
# and the merge's fixed statements are paid once for them all, not once for every 500.
BACKLOG_BATCH_MESSAGES = 5000
# Readings of one message; a file of more is an import, not a live message.
MAX_MESSAGE_READINGS = 10_000
_CONTAINERS = frozenset({dict, list})


class MessageRejected(Exception):
    """A message that cannot be used, with the reason kept in its RejectedMessage."""


@dataclass
class Message:
    """A message as the broker delivered it, with what its acknowledgement needs."""

    topic: str
    payload: bytes
    mid: int = 0
    qos: int = 1
    received: float = field(default_factory=time.monotonic)
    # Which connection delivered it: acknowledgements go back on that connection only.
    connection: int = 0
    # Handed out by the broker as the topic's retained message (on subscribing): an old reading,
    # perhaps corrected since, never a new one.
    retained: bool = False


def take_batch(
    inbox: queue.Queue, *, block: bool, batch_messages: int, batch_wait: float, backlog_messages: int = 0,
) -> list[Message]:
    """Up to `batch_messages` messages of `inbox`: the first, and what arrives within `batch_wait`
    of it (without `block`, only what is there already); then, while more are already waiting,
    up to `backlog_messages` in all."""
    try:
        first = inbox.get(timeout=0.25) if block else inbox.get_nowait()
    except queue.Empty:
        return []
    batch = [first]
    deadline = time.monotonic() + batch_wait
    while len(batch) < batch_messages:
        try:
            if block:
                batch.append(inbox.get(timeout=max(0.0, deadline - time.monotonic())))
            else:
                batch.append(inbox.get_nowait())
        except queue.Empty:
            return batch
    while len(batch) < backlog_messages:
        try:
            batch.append(inbox.get_nowait())
        except queue.Empty:
            break
    return batch


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
        # orjson reads what it can (nearly every message, at a fraction of the cost); what it
        # refuses, json reads as before, with its reasons, NaN included.
        document = orjson.loads(payload)
    except orjson.JSONDecodeError:
        document = _read_json(payload)
    if type(document) is not dict:
        raise MessageRejected(f"payload is a JSON {_json_kind(document)}, not an object with time and value, or readings")
    if "readings" in document:
        readings = document["readings"]
        if type(readings) is not list:
            raise MessageRejected(f"readings is a JSON {_json_kind(readings)}, not an array")
        if not readings:
            raise MessageRejected("readings is empty")
        if len(readings) > MAX_MESSAGE_READINGS:
            raise MessageRejected(f"{len(readings)} readings in one message; at most {MAX_MESSAGE_READINGS}")
        where = "readings[{}]"
    else:
        readings, where = [document], "payload"
    # The common case checked a column at a time; any doubt, and the loop below names the reading.
    # (Of JSON's values only an object takes ["time"]; a JSON reader makes exact dicts, lists and
    # strs, so their types tell them apart as isinstance would.)
    try:
        times = [reading["time"] for reading in readings]
        values = [reading["value"] for reading in readings]
    except (TypeError, KeyError):
        _check_readings(readings, where)
    if set(map(type, times)) != {str} or not _CONTAINERS.isdisjoint(map(type, values)):
        _check_readings(readings, where)
    return RowsIn(meter_name, times, values)


def _check_readings(readings: list, where: str) -> NoReturn:
    """MessageRejected naming the first reading that is no object with a time text and a value."""
    for index, reading in enumerate(readings):
        if type(reading) is not dict or "time" not in reading or "value" not in reading:
            raise MessageRejected(f"{where.format(index)} is not an object with time and value")
        moment, value = reading["time"], reading["value"]
        if type(moment) is not str:
            raise MessageRejected(f"{where.format(index)}: time is a JSON {_json_kind(moment)}, not a string")
        if type(value) is dict or type(value) is list:
            raise MessageRejected(f"{where.format(index)}: value is a JSON {_json_kind(value)}, not a number")
    raise AssertionError("a reading of the wrong shape went unnamed")


def _read_json(payload: bytes):
    """A payload orjson refused, read by json: its document, or MessageRejected saying why not."""
    try:
        text = payload.decode("utf-8")
    except UnicodeDecodeError:
        raise MessageRejected("payload is not UTF-8 text") from None
    try:
        # NaN stands for no value here, as in files: taken, then skipped.
        return json_document(text, strict=False)
    except ValueError as exc:
        raise MessageRejected(f"payload is not JSON: {exc}") from None


def _json_kind(value) -> str:
    kinds = {dict: "object", list: "array", str: "string", bool: "boolean", type(None): "null"}
    return kinds.get(type(value), "number")


def ingest_batch(messages: list[Message], *, level: int, create_meters: bool, channel: str = "mqtt") -> WriteCounts:
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
    writes, skips = [], []

    def clean_alone(meter: Meter, message: Message, rows: RowsIn) -> None:
        """One message cleaned on its own: its write, or its rejection naming the invalid readings."""
        try:
            write = clean_write(meter, rows)
        except RowsInvalid as exc:
            reason = "; ".join(f"reading {p.line}: {p.reason} (value {quoted(p.value)})" for _, p in exc.problems)
            rejections.append(rejection(message, rows.meter_name, reason, channel))
            return
        if message.retained:
            write = _without_held_times(write)
        writes.append(write)
        skips.extend((each, meter.name, reason) for each, reason in _stored_nothing([(message, rows)], write.problems, 1))

    for name, entries in by_meter.items():
        # Retained deliveries go first, so that a fresh reading of the batch wins over them, and
        # fill only times the store holds nothing for.
        for message, rows in entries:
            if message.retained:
                clean_alone(meters[name], message, rows)
        entries = [(message, rows) for message, rows in entries if not message.retained]
        if not entries:
            continue
        # A meter's messages are cleaned in one pass; only when one of them holds an invalid row
        # is each cleaned on its own, to reject just that one.
        together = clean_writes_together(meters[name], [rows for _, rows in entries])
        if together is None:
            for message, rows in entries:
                clean_alone(meters[name], message, rows)
        else:
            writes.append(together)
            skips += [(message, name, reason) for message, reason in _stored_nothing(entries, together.problems, 0)]
    # A message whose every reading was skipped stored nothing: recorded too, as skipped.
    rejections += [
        rejection(message, name, reason, channel, outcome=RejectedMessage.Outcome.SKIPPED) for message, name, reason in skips
    ]
    with transaction.atomic():
        # The broker lets only a meter's device publish on its topic: each meter's readings are a
        # write of its device's.
        counts = store_writes(writes, by=WriteBy.devices(channel)) if writes else WriteCounts()
        # A rejection committed before (its acknowledgement was lost) is not recorded again.
        RejectedMessage.objects.bulk_create(rejections, ignore_conflicts=True)
    # Counts of a batch are added up for a while: the skipped rows and writes they name are not kept.
    return replace(
        counts, messages=len(messages), rejected=len(rejections) - len(skips), messages_skipped=len(skips), skipped_rows=[],
        writes=[],
    )


def _without_held_times(write: CleanWrite) -> CleanWrite:
    """A retained delivery's readings less those whose times the store already holds a reading
    for (those are skipped): a replayed or stale message never undoes a newer committed value."""
    times = [datetime.fromtimestamp(int(epoch), UTC) for epoch in write.epochs]
    held = {
        int(moment.timestamp())
        for moment in Reading.objects.filter(meter=write.meter, time__in=times).values_list("time", flat=True)
    }
    if not held:
        return write
    keep = np.array([int(epoch) not in held for epoch in write.epochs], dtype=bool)
    skipped = [
        RowProblem(int(line), repr(float(value)), "a retained message does not replace the reading stored for its time",
                   "skipped", Code.RETAINED_HELD)
        for line, value, kept in zip(write.lines, write.values, keep) if not kept
    ]
    return replace(write, epochs=write.epochs[keep], values=write.values[keep], lines=write.lines[keep], problems=sorted(
        [*write.problems, *skipped], key=lambda problem: problem.line,
    ))


def _stored_nothing(entries: list[tuple[Message, RowsIn]], problems: list[RowProblem], first: int) -> list[tuple[Message, str]]:
    """The messages of `entries` (cleaned together, their rows numbered on from `first`) each of
    whose readings was skipped, with the reasons, their readings numbered from 1 in each."""
    skipped = {problem.line: problem for problem in problems if problem.kind == "skipped"}
    found, start = [], first
    for message, rows in entries:
        count = len(rows.times)
        mine = [skipped[line] for line in range(start, start + count) if line in skipped]
        if count and len(mine) == count:
            found.append((message, "; ".join(f"reading {p.line - start + 1}: {p.reason}" for p in mine)))
        start += count
    return found


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


def rejection(
    message: Message, meter_name: str, reason: str, channel: str, outcome: str = RejectedMessage.Outcome.REJECTED,
) -> RejectedMessage:
    excerpt = message.payload[: RejectedMessage.EXCERPT_CHARS * 4].decode("utf-8", "replace")
    return RejectedMessage(
        outcome=outcome, channel=channel, topic=message.topic[:500], meter_name=meter_name[:200],
        payload_excerpt=excerpt[: RejectedMessage.EXCERPT_CHARS], payload_size=len(message.payload),
        payload_sha256=hashlib.sha256(message.payload).hexdigest(), reason=reason,
    )


def store_batch(messages: list[Message], *, level: int, create_meters: bool) -> WriteCounts:
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
    total = WriteCounts()
    for message in messages:
        total.add(store_batch([message], level=level, create_meters=create_meters))
    return total


def _reject_alone(message: Message, level: int, reason: str) -> WriteCounts:
    with transaction.atomic():
        RejectedMessage.objects.bulk_create(
            [rejection(message, meter_of_topic(message.topic, level), reason, "mqtt")], ignore_conflicts=True
        )
    return WriteCounts(messages=1, rejected=1)
