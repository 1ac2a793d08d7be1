"""What ingest_mqtt makes of a message, in process: its shape, the file rules for its times and
values, the reasons of rejected messages, and how they are shown (admin, API)."""
import json
import queue

import pytest
from django.contrib.auth.models import User
from django.urls import reverse
from rest_framework.test import APIClient

from readings.mqtt.batches import (
    Message,
    MessageRejected,
    ingest_batch,
    meter_level,
    meter_of_topic,
    parse_payload,
    take_batch,
)
from readings.models import Meter, Reading, RejectedMessage
from readings.mqtt.consumer import broker_address
from testing.helpers import file_reason

TOPIC = "meterusage/v1/meters/+/readings"
LEVEL = meter_level(TOPIC)


def message(meter: str, payload) -> Message:
    body = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    return Message(f"meterusage/v1/meters/{meter}/readings", body)


def test_broker_urls():
    assert broker_address("mqtt://broker") == broker_address("mqtt://broker:1883")
    secure = broker_address("mqtts://user%40site:p%3Ass@broker.example:8884")
    assert (secure.host, secure.port, secure.tls, secure.username, secure.password) == (
        "broker.example", 8884, True, "user@site", "p:ss",
    )
    with pytest.raises(ValueError, match="expected mqtt://"):
        broker_address("http://broker")


def test_the_plus_of_the_topic_names_the_meter():
    assert LEVEL == 3
    assert meter_of_topic("meterusage/v1/meters/gen-a/readings", LEVEL) == "gen-a"
    assert meter_of_topic("short", LEVEL) == ""
    for bad in ["meterusage/#", "a/+/b/+", "no/wildcard"]:
        with pytest.raises(ValueError, match="one '\\+' stands for the meter name"):
            meter_level(bad)


def test_one_reading_or_many():
    one = parse_payload("m", b'{"time": "2019-01-01 00:15:00", "value": 1.5}')
    many = parse_payload("m", json.dumps({"readings": [
        {"time": "2019-01-01T00:15:00Z", "value": "2.5"}, {"time": "2019-01-01 00:30:00", "value": None},
    ]}).encode())

    assert (one.meter_name, one.times, one.values) == ("m", ["2019-01-01 00:15:00"], [1.5])
    assert (many.times, many.values) == (["2019-01-01T00:15:00Z", "2019-01-01 00:30:00"], ["2.5", None])


def test_json_that_orjson_refuses_is_read_as_before():
    nan = parse_payload("m", b'{"time": "2019-01-01 00:15:00", "value": NaN}')
    huge = parse_payload("m", b'{"time": "2019-01-01 00:15:00", "value": 1e400}')

    assert nan.values[0] != nan.values[0]  # NaN: no reading, skipped as in files
    assert huge.values == [float("inf")]


def test_a_backlog_is_taken_in_larger_batches():
    inbox = queue.Queue()
    for mid in range(12):
        inbox.put(Message("t", b"{}", mid=mid))

    first = take_batch(inbox, block=False, batch_messages=5, batch_wait=0, backlog_messages=8)
    second = take_batch(inbox, block=False, batch_messages=5, batch_wait=0)
    last = take_batch(inbox, block=False, batch_messages=5, batch_wait=0, backlog_messages=8)

    assert [m.mid for m in first] == list(range(8))  # more were waiting: past the batch, up to the backlog's
    assert [m.mid for m in second] == [8, 9, 10, 11]  # fewer than a batch were left
    assert last == []


def test_the_broker_may_hold_two_of_the_largest_batches_unacknowledged():
    from readings.mqtt.consumer import Consumer, ConsumerOptions

    options = ConsumerOptions(url="mqtt://127.0.0.1:1", topic=TOPIC, client_id="unit", batch_messages=500, backlog_messages=5000)

    assert Consumer(options).connect_properties.ReceiveMaximum == 10_000


@pytest.mark.parametrize("payload, reason", [
    (b"\xff", "payload is not UTF-8 text"),
    (b"{", "payload is not JSON: Expecting property name enclosed in double quotes: line 1 column 2 (char 1)"),
    (b"[]", "payload is a JSON array, not an object with time and value, or readings"),
    (b'"text"', "payload is a JSON string, not an object with time and value, or readings"),
    (b'{"time": "2019-01-01 00:15:00"}', "payload is not an object with time and value"),
    (b'{"readings": []}', "readings is empty"),
    (b'{"readings": 5}', "readings is a JSON number, not an array"),
    (b'{"readings": [{"time": "2019-01-01 00:15:00", "value": 1}, 7]}', "readings[1] is not an object with time and value"),
    (b'{"time": 1546301700, "value": 1}', "payload: time is a JSON number, not a string"),
    (b'{"readings": [{"time": "2019-01-01 00:15:00", "value": [1]}]}', "readings[0]: value is a JSON array, not a number"),
])
def test_messages_of_the_wrong_shape(payload, reason):
    with pytest.raises(MessageRejected) as caught:
        parse_payload("m", payload)
    assert str(caught.value) == reason


@pytest.mark.django_db
def test_bad_times_and_values_are_rejected_with_the_reasons_of_a_file():
    meter = Meter.objects.create(name="live")
    batch = [
        message("live", {"time": "2019-01-01 00:15:00", "value": 1.5}),
        message("live", {"readings": [{"time": "2019-01-01 00:30:00", "value": 2}, {"time": "2019-02-30 00:00:00", "value": 3}]}),
        message("live", {"time": "2019-01-01 00:45:00", "value": "1,5"}),
        message("live", {"time": "2019-01-01 01:00:00", "value": None}),
        message("live", {"time": "2019-01-01 01:15:00", "value": "NaN"}),
        message("nobody", {"time": "2019-01-01 00:15:00", "value": 1}),
        message("live", {"readings": [{"time": "2019-01-01 01:30:00", "value": 1}, {"time": "2019-01-01 01:30:00", "value": 2}]}),
    ]

    counts = ingest_batch(batch, level=LEVEL, create_meters=False)

    assert (counts.messages, counts.inserted, counts.skipped, counts.rejected) == (7, 1, 2, 4)
    assert list(Reading.objects.filter(meter=meter).values_list("value", flat=True)) == [1.5]
    reasons = dict(RejectedMessage.objects.values_list("payload_excerpt", "reason"))
    assert reasons[batch[1].payload.decode()] == f"reading 2: {file_reason('2019-02-30 00:00:00', '3')} (value '2019-02-30 00:00:00')"
    assert reasons[batch[2].payload.decode()] == f"reading 1: {file_reason('2019-01-01 00:45:00', '1,5')} (value '1,5')"
    assert reasons[batch[5].payload.decode()] == "no meter named 'nobody' (INGEST_CREATE_METERS is off)"
    assert reasons[batch[6].payload.decode()].startswith("reading 2: readings 1 and 2 both give time 2019-01-01 01:30:00")
    rejected = RejectedMessage.objects.get(meter_name="nobody")
    assert (rejected.channel, rejected.topic, rejected.payload_size) == (
        "mqtt", "meterusage/v1/meters/nobody/readings", len(batch[5].payload),
    )


@pytest.mark.django_db
def test_a_message_delivered_again_changes_nothing_and_is_rejected_once():
    Meter.objects.create(name="live")
    batch = [message("live", {"time": "2019-01-01 00:15:00", "value": 1.5}), message("live", b"oops")]

    first = ingest_batch(batch, level=LEVEL, create_meters=False)
    again = ingest_batch(batch, level=LEVEL, create_meters=False)

    assert (first.inserted, first.unchanged, first.rejected) == (1, 0, 1)
    assert (again.inserted, again.unchanged, again.rejected) == (0, 1, 1)
    assert Reading.objects.count() == 1
    assert RejectedMessage.objects.count() == 1


@pytest.mark.django_db
def test_later_messages_of_a_batch_win_and_meters_are_created_when_allowed():
    batch = [
        message("new-meter", {"time": "2019-01-01 00:15:00", "value": 1}),
        message("new-meter", {"time": "2019-01-01 00:15:00", "value": 2}),
        message("Bad Name", {"time": "2019-01-01 00:15:00", "value": 2}),
    ]

    counts = ingest_batch(batch, level=LEVEL, create_meters=True)

    assert (counts.inserted, counts.rejected) == (1, 1)
    assert Reading.objects.get(meter__name="new-meter").value == 2
    assert RejectedMessage.objects.get().reason.startswith("meter name ")


@pytest.mark.django_db
def test_a_read_only_meter_takes_no_live_readings():
    Meter.objects.create(name="frozen", source="csv")

    counts = ingest_batch([message("frozen", {"time": "2019-01-01 00:15:00", "value": 1})], level=LEVEL, create_meters=False)

    assert counts.rejected == 1
    assert RejectedMessage.objects.get().reason == "meter 'frozen' is served by the read-only source 'csv'"


@pytest.fixture
def rejected(db):
    Meter.objects.create(name="live")
    ingest_batch([message("live", b"not json"), message("ghost", {"time": "2019-01-01 00:15:00", "value": 1})],
                 level=LEVEL, create_meters=False)


def test_admin_lists_rejected_messages_read_only(admin_client, rejected):
    url = reverse("admin:readings_rejectedmessage_changelist")
    page = admin_client.get(url).content.decode()

    assert "payload is not JSON" in page and "no meter named" in page
    assert admin_client.get(url, {"q": "ghost"}).context["cl"].result_count == 1
    assert admin_client.get(url, {"channel__exact": "mqtt"}).context["cl"].result_count == 2
    one = RejectedMessage.objects.get(meter_name="ghost")
    detail = admin_client.get(reverse("admin:readings_rejectedmessage_change", args=[one.pk]))
    assert detail.status_code == 200 and b'name="_save"' not in detail.content
    assert admin_client.get(reverse("admin:readings_rejectedmessage_add")).status_code == 403


def test_api_lists_rejected_messages_for_staff(rejected):
    api = APIClient()
    assert api.get("/api/v1/rejected-messages/").status_code == 401
    api.force_authenticate(User.objects.create_user("operator", is_staff=True))

    listed = api.get("/api/v1/rejected-messages/").json()
    assert listed["count"] == 2
    newest = listed["results"][0]
    assert (newest["meter_name"], newest["topic"], newest["channel"]) == ("ghost", "meterusage/v1/meters/ghost/readings", "mqtt")
    assert newest["reason"] == "no meter named 'ghost' (INGEST_CREATE_METERS is off)"
    assert sorted(newest) == ["channel", "id", "meter_name", "outcome", "payload_excerpt", "payload_sha256", "payload_size",
                              "reason", "received_at", "topic"]
    assert api.get("/api/v1/rejected-messages/", {"meter": "live"}).json()["results"][0]["reason"].startswith("payload is not JSON")
    assert api.get(f"/api/v1/rejected-messages/{newest['id']}/").json() == newest


@pytest.mark.django_db
def test_a_batch_is_acknowledged_in_order_after_its_commit_and_only_on_its_connection(monkeypatch):
    from django.db import OperationalError

    from readings.mqtt import consumer as ingest
    from readings.writes.counts import WriteCounts

    events = []

    def store(batch, **options):
        if not any(event[0] == "failed" for event in events):
            events.append(("failed",))
            raise OperationalError("the database is down")
        events.append(("committed", [m.mid for m in batch]))
        return WriteCounts(messages=len(batch))

    class Client:
        def ack(self, mid, qos):
            events.append(("ack", mid))

    monkeypatch.setattr(ingest, "store_batch", store)
    monkeypatch.setattr(ingest, "RETRY_SECONDS", (0.01, 0.01))
    consumer = ingest.Consumer(ingest.ConsumerOptions(url="mqtt://127.0.0.1:1", topic=TOPIC, client_id="unit"))
    consumer.client = Client()
    consumer.connection = 2
    batch = [Message("t", b"{}", mid=mid, connection=connection) for mid, connection in [(5, 2), (3, 2), (9, 1), (4, 2)]]

    assert consumer._commit_and_ack(batch)
    # Message 9 came on a connection since lost: the broker delivers it again on this one.
    assert events == [("failed",), ("committed", [5, 3, 9, 4]), ("ack", 5), ("ack", 3), ("ack", 4)]


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        (b"[" * 5000 + b"]" * 5000, "payload is not JSON: arrays and objects are nested too deep"),
        (b'{"time": "2019-01-01 00:15:00", "value": 1' + b"0" * 5000 + b"}",
         "payload is not JSON: a number has more than 4300 digits"),
    ],
    ids=["nested 5000 deep", "a number of 5000 digits"],
)
def test_a_payload_python_cannot_read_is_rejected_in_the_products_words(payload, reason):
    with pytest.raises(MessageRejected) as rejected:
        parse_payload("live", payload)

    assert str(rejected.value) == reason


@pytest.mark.django_db
@pytest.mark.parametrize("with_an_invalid_message", [False, True], ids=["cleaned together", "cleaned one by one"])
def test_a_message_that_stores_nothing_is_recorded_as_skipped(with_an_invalid_message):
    Meter.objects.create(name="live")
    batch = [
        message("live", {"time": "2019-01-01 00:15:00", "value": 1.5}),
        message("live", {"time": "2019-01-01 00:30:00", "value": None}),
        message("live", {"readings": [{"time": "2019-01-01 00:45:00", "value": "NaN"}, {"time": "2019-01-01 01:00:00", "value": ""}]}),
        message("live", {"readings": [{"time": "2019-01-01 01:15:00", "value": 2}, {"time": "2019-01-01 01:30:00", "value": "NA"}]}),
    ]
    if with_an_invalid_message:
        batch.append(message("live", {"time": "yesterday", "value": 1}))

    counts = ingest_batch(batch, level=LEVEL, create_meters=False)

    assert (counts.messages, counts.inserted, counts.skipped) == (len(batch), 2, 4)
    assert (counts.messages_skipped, counts.rejected) == (2, int(with_an_invalid_message))
    skipped = dict(
        RejectedMessage.objects.filter(outcome="skipped").values_list("payload_excerpt", "reason")
    )
    assert skipped == {
        batch[1].payload.decode(): "reading 1: empty value",
        batch[2].payload.decode(): "reading 1: NaN; reading 2: empty value",
    }
    assert RejectedMessage.objects.filter(outcome="rejected").count() == int(with_an_invalid_message)


@pytest.mark.django_db
def test_a_retained_message_never_replaces_a_stored_reading():
    meter = Meter.objects.create(name="live")
    retained = {"time": "2024-06-01 00:00:00", "value": 100}

    ingest_batch([message("live", {"time": "2024-06-01 00:00:00", "value": 200})], level=LEVEL, create_meters=False)
    replayed = message("live", retained)
    replayed.retained = True  # as the broker hands it out again on subscribing
    counts = ingest_batch([replayed], level=LEVEL, create_meters=False)

    assert list(Reading.objects.filter(meter=meter).values_list("value", flat=True)) == [200.0]
    assert (counts.inserted, counts.updated, counts.skipped, counts.messages_skipped) == (0, 0, 1, 1)
    assert RejectedMessage.objects.get(outcome="skipped").reason == (
        "reading 1: a retained message does not replace the reading stored for its time"
    )


@pytest.mark.django_db
def test_a_retained_message_fills_a_time_that_holds_nothing_and_a_fresh_one_of_its_batch_wins():
    meter = Meter.objects.create(name="live")
    first = message("live", {"readings": [{"time": "2024-06-01 00:00:00", "value": 1}, {"time": "2024-06-01 00:15:00", "value": 2}]})
    first.retained = True
    fresh = message("live", {"time": "2024-06-01 00:15:00", "value": 3})

    counts = ingest_batch([fresh, first], level=LEVEL, create_meters=False)

    assert sorted(Reading.objects.filter(meter=meter).values_list("value", flat=True)) == [1.0, 3.0]
    assert (counts.inserted, counts.messages_skipped) == (2, 0)
