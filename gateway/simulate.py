"""A fleet of simulated meters sending readings live, over MQTT or gRPC, for demos and benches.

Values come from `readings.generate` (daily and weekly shape, noise, a few gaps); the meters take
turns, each sending its readings in time order, at a total rate of readings per second.
"""
import math
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import date

import numpy as np

from readings.generate import synthetic_readings
from readings.models import Meter

SLOTS_PER_DAY = 96


def fleet_names(prefix: str, meters: int) -> list[str]:
    return [f"{prefix}-{index:03d}" for index in range(1, meters + 1)]


def missing_meters(names: list[str], *, create: bool) -> list[str]:
    """The names without a meter; with `create` they are created (UTC, kWh) and none are missing."""
    known = set(Meter.objects.filter(name__in=names).values_list("name", flat=True))
    missing = [name for name in names if name not in known]
    if create and missing:
        Meter.objects.bulk_create([Meter(name=name, description="simulated meter") for name in missing])
        return []
    return missing


@dataclass(frozen=True)
class Reading:
    meter: str
    time: str  # naive wall time, as a file holds it
    value: float


def fleet_readings(names: list[str], *, total: int, start: date, seed: int = 0) -> Iterator[Reading]:
    """`total` readings of the meters in turn: the first reading of each, then the second, ..."""
    per_meter = math.ceil(total / len(names))
    # Generated days have gaps: a few more days than the count needs.
    days = math.ceil(per_meter * 1.2 / SLOTS_PER_DAY) + 1
    series = []
    for index in range(len(names)):
        times, values = synthetic_readings(days=days, start=start, seed=seed, meter_index=index)
        texts = np.datetime_as_string(times[:per_meter], unit="s")
        series.append((np.char.replace(texts, "T", " ").tolist(), values[:per_meter].tolist()))
    sent = 0
    for slot in range(per_meter):
        for name, (times, values) in zip(names, series):
            if sent == total:
                return
            yield Reading(name, times[slot], values[slot])
            sent += 1


def paced(readings: Iterator[Reading], *, rate: float, duration: float | None, chunk: int,
          send: Callable[[list[Reading]], None], clock=time.monotonic, sleep=time.sleep) -> int:
    """Hand `send` the readings in chunks of at most `chunk`, no faster than `rate` a second,
    until they run out or `duration` seconds have passed; returns how many were sent."""
    began, sent = clock(), 0
    pending: list[Reading] = []
    for reading in readings:
        pending.append(reading)
        if len(pending) < chunk:
            continue
        sent += _send_when_due(pending, sent, began, rate, send, clock, sleep)
        pending = []
        if duration is not None and clock() - began >= duration:
            return sent
    if pending:
        sent += _send_when_due(pending, sent, began, rate, send, clock, sleep)
    return sent


def _send_when_due(pending, sent, began, rate, send, clock, sleep) -> int:
    due_at = began + (sent + len(pending)) / rate
    wait = due_at - clock()
    if wait > 0:
        sleep(wait)
    send(pending)
    return len(pending)


class MqttSender:
    """Publishes each meter's readings as messages of `per_message` readings (QoS 1)."""

    def __init__(self, url: str, topic: str, *, client_id: str = ""):
        import paho.mqtt.client as mqtt

        from readings.mqtt.consumer import broker_address

        address = broker_address(url)
        self.topic = topic
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv5)
        if address.username is not None:
            self.client.username_pw_set(address.username, address.password)
        if address.tls:
            self.client.tls_set()
        self.client.max_inflight_messages_set(1000)
        self.client.connect(address.host, address.port, keepalive=30)
        self.client.loop_start()
        self.last = None

    def send(self, readings: list[Reading]) -> None:
        import json

        by_meter: dict[str, list[Reading]] = {}
        for reading in readings:
            by_meter.setdefault(reading.meter, []).append(reading)
        for meter, group in by_meter.items():
            body = {"readings": [{"time": r.time, "value": r.value} for r in group]}
            self.last = self.client.publish(self.topic.replace("+", meter, 1), json.dumps(body), qos=1)

    def close(self) -> None:
        if self.last is not None:
            self.last.wait_for_publish(timeout=60)
        self.client.disconnect()
        self.client.loop_stop()


class GrpcSender:
    """Sends WriteReadings requests, one per chunk."""

    def __init__(self, target: str, token: str, root_cert: str = ""):
        import grpc

        from gateway.client import channel_target
        from grpc_api.gen.meterusage.v1 import meter_usage_pb2 as pb
        from grpc_api.gen.meterusage.v1 import meter_usage_pb2_grpc

        if root_cert:
            with open(root_cert, "rb") as pem:
                credentials = grpc.ssl_channel_credentials(root_certificates=pem.read())
            self.channel = grpc.secure_channel(channel_target(target), credentials)
        else:
            self.channel = grpc.insecure_channel(channel_target(target))
        self.stub = meter_usage_pb2_grpc.MeterUsageServiceStub(self.channel)
        self.pb = pb
        self.metadata = (("authorization", f"Bearer {token}"),) if token else ()

    def send(self, readings: list[Reading]) -> None:
        request = self.pb.WriteReadingsRequest(readings=[
            self.pb.ReadingInput(meter=r.meter, local_time=r.time, value=r.value) for r in readings
        ])
        self.stub.WriteReadings(request, timeout=30, metadata=self.metadata)

    def close(self) -> None:
        self.channel.close()
