"""Who wrote what: every write into the relational store is recorded as a Write (its author,
channel and counts), its change-log rows point at it, and an import run names who ran it; admin
shows them. One test per channel (file, WriteReadings, MQTT), then the admin pages. (The MQTT
consumer as deployed, with a real broker, is in test_ingest_mqtt.py.)"""
import getpass
import json
import re
from io import StringIO

import pytest
from django.contrib.auth.models import Permission, User
from django.core.files.uploadedfile import SimpleUploadedFile
from django.core.management import call_command
from django.urls import reverse

from readings.domain import WRITTEN_BY_MAX_LENGTH, WriteBy
from readings.models import ImportRun, Meter, ReadingChange, Write
from readings.mqtt.batches import Message, ingest_batch, meter_level
from readings.writes.live import RowsIn, readings_write

pytestmark = pytest.mark.django_db

LEVEL = meter_level("meterusage/v1/meters/+/readings")


def authors_of_changes(meter: Meter) -> dict[str, int]:
    """How many of the meter's change-log rows each author wrote."""
    found: dict[str, int] = {}
    for change in ReadingChange.objects.filter(meter=meter).select_related("write"):
        author = change.write.written_by if change.write else None
        found[author] = found.get(author, 0) + 1
    return found


def test_a_file_import_records_the_command_and_its_os_user(reference_csv):
    call_command("import_readings", str(reference_csv), "--meter", "audit-file", stdout=StringIO())
    call_command("import_readings", str(reference_csv), "--meter", "audit-file", stdout=StringIO())
    call_command("import_readings", str(reference_csv), "--meter", "audit-file", "--dry-run", stdout=StringIO())

    meter = Meter.objects.get(name="audit-file")
    first, again, dry = ImportRun.objects.filter(meter_name="audit-file").order_by("id")
    author = f"command:{getpass.getuser()}"
    assert [run.written_by for run in (first, again, dry)] == [author] * 3
    write = first.write
    assert (write.written_by, write.channel, write.meter, write.meter_count) == (author, "file", meter, 1)
    assert (write.inserted, write.updated, write.unchanged) == (2974, 0, 0)
    # The same file again is a write that changed nothing; a dry run committed none.
    assert (again.write.inserted, again.write.unchanged) == (0, 2974)
    assert dry.write is None
    assert list(Write.objects.filter(meter=meter).order_by("id")) == [write, again.write]
    assert authors_of_changes(meter) == {author: 2974}
    assert set(ReadingChange.objects.filter(meter=meter).values_list("write_id", flat=True)) == {write.pk}


def test_an_admin_upload_records_the_uploader(reference_csv):
    staff = User.objects.create_user("ann", is_staff=True, is_superuser=True)
    meter = Meter.objects.create(name="audit-upload")
    client = _client(staff)
    url = reverse("admin:readings_meter_upload", args=[meter.pk])

    page = client.post(url, {"file": SimpleUploadedFile("jan.csv", reference_csv.read_bytes(), "text/csv"), "time_zone": ""})
    token = re.search(r'name="token" value="([^"]+)"', page.content.decode())[1]
    assert client.post(url, {"confirm": "1", "token": token}).status_code == 302

    dry, run = ImportRun.objects.filter(meter=meter).order_by("id")
    assert (dry.written_by, dry.write) == ("user:ann", None)
    assert (run.written_by, run.uploaded_by, run.write.written_by, run.write.channel) == ("user:ann", staff, "user:ann", "file")
    assert authors_of_changes(meter) == {"user:ann": 2974}


def test_write_readings_records_its_caller_and_links_the_change_log():
    a, b = Meter.objects.create(name="audit-a"), Meter.objects.create(name="audit-b")
    rows = [
        RowsIn("audit-a", ["2019-01-01 00:15:00", "2019-01-01 00:30:00"], [1.0, 2.0]),
        RowsIn("audit-b", ["2019-01-01 00:15:00"], [3.0]),
    ]

    counts = readings_write(rows, create_meters=False, written_by="key:abcd1234", channel="grpc")
    correction = readings_write(
        [RowsIn("audit-a", ["2019-01-01 00:15:00", "2019-01-01 00:30:00"], [1.5, 2.0])],
        create_meters=False, written_by="user:bob", channel="grpc",
    )
    default = readings_write([RowsIn("audit-b", ["2019-01-01 00:30:00"], [4.0])], create_meters=False)

    (write,) = Write.objects.filter(pk__in=counts.writes)
    assert (write.written_by, write.channel, write.meter, write.meter_count) == ("key:abcd1234", "grpc", None, 2)
    assert (write.inserted, write.updated, write.unchanged) == (3, 0, 0)
    (fix,) = Write.objects.filter(pk__in=correction.writes)
    assert (fix.written_by, fix.meter, fix.meter_count, fix.inserted, fix.updated, fix.unchanged) == (
        "user:bob", a, 1, 0, 1, 1,
    )
    assert Write.objects.get(pk__in=default.writes).written_by == "service"
    log = list(ReadingChange.objects.filter(meter__in=[a, b]).order_by("id").values_list("meter__name", "value", "replaced", "write_id"))
    assert log == [
        ("audit-a", 1.0, False, write.pk), ("audit-a", 2.0, False, write.pk), ("audit-b", 3.0, False, write.pk),
        ("audit-a", 1.5, True, fix.pk), ("audit-b", 4.0, False, default.writes[0]),
    ]


def test_an_mqtt_batch_is_a_write_of_each_meter_s_device():
    a, b = Meter.objects.create(name="audit-a"), Meter.objects.create(name="audit-b")
    batch = [
        _message("audit-a", {"readings": [{"time": "2019-01-01 00:15:00", "value": 1}, {"time": "2019-01-01 00:30:00", "value": 2}]}),
        _message("audit-b", {"time": "2019-01-01 00:15:00", "value": 3}),
        _message("audit-a", {"time": "2019-01-01 00:15:00", "value": 5}),  # a later message of the batch wins
    ]

    counts = ingest_batch(batch, level=LEVEL, create_meters=False)
    again = ingest_batch(batch[1:2], level=LEVEL, create_meters=False)

    assert (counts.inserted, again.unchanged) == (3, 1)
    writes = list(Write.objects.filter(meter__in=[a, b]).order_by("id").values_list(
        "written_by", "channel", "meter__name", "meter_count", "inserted", "updated", "unchanged",
    ))
    assert sorted(writes[:2]) == [("device:audit-a", "mqtt", "audit-a", 1, 2, 0, 0), ("device:audit-b", "mqtt", "audit-b", 1, 1, 0, 0)]
    assert writes[2:] == [("device:audit-b", "mqtt", "audit-b", 1, 0, 0, 1)]
    assert authors_of_changes(a) == {"device:audit-a": 2}
    assert authors_of_changes(b) == {"device:audit-b": 1}


def test_an_author_longer_than_the_record_keeps_is_cut_short():
    long_name = "oauth:" + "x" * 300

    assert len(WriteBy("grpc", long_name).author()) == WRITTEN_BY_MAX_LENGTH
    assert WriteBy.devices().author("house-7-main") == "device:house-7-main"


# ---- Admin -----------------------------------------------------------------------------------


def _message(meter: str, payload: dict) -> Message:
    return Message(f"meterusage/v1/meters/{meter}/readings", json.dumps(payload).encode())


def _client(user: User):
    from django.test import Client

    client = Client()
    client.force_login(user)
    return client


@pytest.fixture
def staff_viewer():
    """A staff user who may only view the records of writes (they are read-only to everyone)."""
    user = User.objects.create_user("viewer", is_staff=True)
    user.user_permissions.set(Permission.objects.filter(
        content_type__app_label="readings", codename__in=["view_write", "view_readingchange", "view_importrun"],
    ))
    return user


@pytest.fixture
def written(reference_csv):
    """A file import, a WriteReadings write and an MQTT batch."""
    call_command("import_readings", str(reference_csv), "--meter", "audit-file", stdout=StringIO())
    Meter.objects.create(name="audit-live")
    readings_write([RowsIn("audit-live", ["2019-01-01 00:15:00"], [1.0])], create_meters=False, written_by="key:abcd1234")
    ingest_batch([_message("audit-live", {"time": "2019-01-01 00:15:00", "value": 2.0})], level=LEVEL, create_meters=False)
    return Meter.objects.get(name="audit-live")


def test_the_writes_page_lists_who_wrote_what_and_filters_by_channel_and_who(staff_viewer, written):
    client = _client(staff_viewer)
    url = reverse("admin:readings_write_changelist")

    page = client.get(url)
    assert page.status_code == 200
    html = page.content.decode()
    for text in [f"command:{getpass.getuser()}", "key:abcd1234", "device:audit-live", "audit-file", "File import", "MQTT"]:
        assert text in html
    shown = lambda **query: sorted(w.written_by for w in client.get(url, query).context["cl"].result_list)  # noqa: E731
    assert shown(channel__exact="mqtt") == ["device:audit-live"]
    assert shown(author="key") == ["key:abcd1234"]
    assert shown(written_by="device:audit-live") == ["device:audit-live"]
    assert shown(q="abcd") == ["key:abcd1234"]
    assert client.get(url, {"channel__exact": "grpc", "author": "device"}).context["cl"].result_count == 0

    write = Write.objects.get(written_by="device:audit-live")
    detail = client.get(reverse("admin:readings_write_change", args=[write.pk]))
    assert detail.status_code == 200
    assert "device:audit-live" in detail.content.decode() and "1 changed readings" in detail.content.decode()
    assert client.get(reverse("admin:readings_write_add")).status_code == 403


def test_change_log_entries_show_their_author(staff_viewer, written):
    client = _client(staff_viewer)
    write = Write.objects.get(written_by="device:audit-live")
    url = reverse("admin:readings_readingchange_changelist")

    page = client.get(url, {"meter__id__exact": written.pk})
    assert page.status_code == 200
    assert [c.write.written_by for c in page.context["cl"].result_list] == ["device:audit-live", "key:abcd1234"]
    assert "device:audit-live" in page.content.decode()
    # The link of a write to its changes: that meter's changes by that write.
    of_write = client.get(url, {"meter__id__exact": written.pk, "write": write.pk})
    assert [(c.value, c.replaced) for c in of_write.context["cl"].result_list] == [(2.0, True)]
    change = ReadingChange.objects.filter(write=write).get()
    assert "device:audit-live" in client.get(reverse("admin:readings_readingchange_change", args=[change.pk])).content.decode()


def test_the_import_run_page_shows_who_ran_it(staff_viewer, written):
    client = _client(staff_viewer)
    run = ImportRun.objects.get(meter_name="audit-file")

    listing = client.get(reverse("admin:readings_importrun_changelist")).content.decode()
    detail = client.get(reverse("admin:readings_importrun_change", args=[run.pk])).content.decode()

    author = f"command:{getpass.getuser()}"
    assert author in listing
    assert author in detail
    assert reverse("admin:readings_write_change", args=[run.write_id]) in detail
