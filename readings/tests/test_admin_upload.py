"""Staff upload a CSV file for a meter in admin: a dry run first (counts and every invalid row,
nothing stored), the import on confirmation; both recorded as import runs with the uploader."""
import re

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse

from readings.models import ImportRun, Meter, Reading

pytestmark = pytest.mark.django_db


@pytest.fixture
def meter():
    return Meter.objects.create(name="upload-1", time_zone="Europe/Amsterdam")


def upload_url(meter) -> str:
    return reverse("admin:readings_meter_upload", args=[meter.pk])


def preview(admin_client, meter, name: str, content: bytes):
    return admin_client.post(upload_url(meter), {"file": SimpleUploadedFile(name, content, "text/csv"), "time_zone": ""})


def test_the_meter_page_links_to_the_upload(admin_client, meter):
    page = admin_client.get(reverse("admin:readings_meter_change", args=[meter.pk])).content.decode()
    assert upload_url(meter) in page
    assert admin_client.get(upload_url(meter)).status_code == 200


def test_a_file_is_previewed_then_imported_once_confirmed(admin_client, admin_user, meter, reference_csv):
    content = reference_csv.read_bytes()
    page = preview(admin_client, meter, "january.csv", content)

    assert page.status_code == 200
    assert Reading.objects.filter(meter=meter).count() == 0  # a dry run stores nothing
    dry = ImportRun.objects.get(meter_name=meter.name)
    assert (dry.dry_run, dry.status, dry.rows_inserted, dry.rows_skipped, dry.file_name, dry.uploaded_by) == (
        True, "succeeded", 2974, 1, "january.csv", admin_user)
    html = page.content.decode()
    assert "Import these readings" in html and "1548" in html  # the NaN row, set aside
    token = re.search(r'name="token" value="([^"]+)"', html)[1]

    done = admin_client.post(upload_url(meter), {"confirm": "1", "token": token})
    assert done.status_code == 302
    assert Reading.objects.filter(meter=meter).count() == 2974
    run = ImportRun.objects.filter(meter_name=meter.name, dry_run=False).get()
    assert (run.status, run.rows_inserted, run.uploaded_by, run.file_name) == ("succeeded", 2974, admin_user, "january.csv")

    again = admin_client.post(upload_url(meter), {"confirm": "1", "token": token}, follow=True)
    assert "no longer kept" in again.content.decode()  # one confirmation imports once
    assert ImportRun.objects.filter(meter_name=meter.name, dry_run=False).count() == 1


def test_a_file_with_invalid_rows_shows_every_one_and_cannot_be_imported(admin_client, meter):
    rows = ["time,meterusage"] + [f"2024-06-01 00:{m:02d}:00,{m}" for m in range(0, 60, 15)]
    rows[2] = "2024-06-01 00:15:00,lots"
    rows.append("yesterday,3")
    page = preview(admin_client, meter, "bad.csv", "\n".join(rows).encode())

    html = page.content.decode()
    assert "Nothing can be stored" in html and "Import these readings" not in html
    rejected = re.findall(r"<tr><td>(\d+)</td>", html)
    assert rejected == ["3", "6"]
    assert Reading.objects.filter(meter=meter).count() == 0
    run = ImportRun.objects.get(meter_name=meter.name)
    assert (run.status, run.rows_invalid) == ("failed", 2)
