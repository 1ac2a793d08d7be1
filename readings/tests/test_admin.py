"""Admin pages for meters, readings and import runs, against imported data."""
from io import StringIO

import pytest
from django.core.management import call_command
from django.db.models import QuerySet
from django.urls import NoReverseMatch, reverse

from readings.admin import EstimatedCountPaginator
from readings.models import ImportRun, Meter, Reading

pytestmark = pytest.mark.django_db


@pytest.fixture
def imported(reference_csv):
    call_command("import_readings", str(reference_csv), stdout=StringIO())
    return Meter.objects.get()


def test_meter_list_shows_counts_and_range(admin_client, imported):
    page = admin_client.get(reverse("admin:readings_meter_changelist")).content.decode()

    assert "meterusage" in page
    assert "2974" in page


def test_meter_page_shows_import_history(admin_client, imported):
    page = admin_client.get(reverse("admin:readings_meter_change", args=[imported.pk])).content.decode()

    assert "Import history" in page
    assert "meterusage.csv" in page


def test_reading_list_is_sorted_newest_first_and_filters_by_meter(admin_client, imported):
    url = reverse("admin:readings_reading_changelist")
    response = admin_client.get(url, {"meter__id__exact": imported.pk})

    assert response.status_code == 200
    shown = list(response.context["cl"].result_list)
    assert len(shown) == 100
    assert shown[0].time == imported.last_reading_at
    assert [r.time for r in shown] == sorted((r.time for r in shown), reverse=True)
    assert response.context["cl"].result_count == 2974


def test_reading_date_hierarchy_drills_down(admin_client, imported):
    url = reverse("admin:readings_reading_changelist")
    response = admin_client.get(url, {"time__year": "2019", "time__month": "1", "time__day": "17"})

    assert response.context["cl"].result_count == 95


def test_readings_are_listed_but_cannot_be_edited_in_admin(admin_client, imported):
    response = admin_client.get(reverse("admin:readings_reading_changelist"), {"meter__id__exact": imported.pk})

    assert response.status_code == 200
    assert b"/change/" not in response.content
    for name in ("admin:readings_reading_add", "admin:readings_reading_change", "admin:readings_reading_delete"):
        with pytest.raises(NoReverseMatch):
            reverse(name, args=[] if name.endswith("add") else ["1"])


def test_import_run_shows_rejected_rows(admin_client, imported):
    run = ImportRun.objects.get()
    page = admin_client.get(reverse("admin:readings_importrun_change", args=[run.pk])).content.decode()

    assert "<td>1548</td><td>skipped</td><td>NaN</td><td>NaN</td>" in page
    assert admin_client.get(reverse("admin:readings_importrun_add")).status_code == 403


def test_estimated_paginator_counts_exactly_when_quick(imported):
    paginator = EstimatedCountPaginator(Reading.objects.filter(meter=imported).order_by("time"), 100)

    assert paginator.count == 2974
    assert paginator.num_pages == 30


def test_estimated_paginator_falls_back_to_the_planner_on_a_slow_count(imported, monkeypatch):
    from django.db import connection

    if connection.vendor != "postgresql":
        pytest.skip("the planner's estimate is PostgreSQL's; other databases always count")
    monkeypatch.setattr("readings.admin.EXACT_COUNT_TIMEOUT_MS", 50)
    # pg_sleep per row makes the exact count take ~3 s, far past the timeout.
    slow = Reading.objects.extra(where=["pg_sleep(0.001) IS NOT NULL"]).order_by("time")

    explained = []
    real_explain = QuerySet.explain
    monkeypatch.setattr(QuerySet, "explain", lambda qs, **kw: explained.append(kw) or real_explain(qs, **kw))

    count = EstimatedCountPaginator(slow, 100).count

    assert explained == [{"format": "json"}]
    assert count > 0
    with connection.cursor() as cursor:
        cursor.execute("SHOW statement_timeout")
        assert cursor.fetchone()[0] == "0"
