"""The dashboard in headless Chromium (Debian's, driven by Playwright) against a live web server
and a real gRPC server. Screenshots go to test-artifacts/."""
import shutil
from io import StringIO

import pytest
from django.core.management import call_command
from django.test import override_settings

from readings.models import Meter
from testing.browser import CHROMIUM, expect_ready, screenshot

# What the page does with the API's answers is the same on every engine (the API tests run on each).
pytestmark = [pytest.mark.django_db, pytest.mark.any_engine]


@pytest.fixture(scope="module", autouse=True)
def year_meter(served_data, django_db_blocker, tmp_path_factory):
    """A year of generated 15-minute readings (35,000), to see that the page stays aggregated."""
    path = tmp_path_factory.mktemp("year") / "gen-year.csv"
    with django_db_blocker.unblock():
        call_command("generate_readings", "--days", "366", "--start", "2020-01-01", "--seed", "3", "--out", str(path), stdout=StringIO())
        call_command("import_readings", str(path), "--public", stdout=StringIO())
        yield Meter.objects.get(name="gen-year")


def test_dashboard_loads_the_reference_meter(page, live_url):
    from playwright.sync_api import expect

    page.goto("/?meter=meterusage")
    expect_ready(page)

    assert page.url == f"{live_url}/?meter=meterusage&start=2019-01-01T00%3A15&end=2019-02-01T00%3A00&window=auto&tz=UTC&page=1"
    chart = page.locator("#chart")
    assert chart.get_attribute("data-points") == "2974"
    assert chart.get_attribute("data-window") == "15m"
    assert chart.locator("canvas").count() == 1
    rows = page.locator("#values tbody tr")
    assert rows.count() == 50
    assert rows.nth(0).locator("td").all_inner_texts() == ["2019-01-01 00:15", "55.09"]
    expect(page.locator("#table-info")).to_have_text("Rows 1–50 of 2,974")
    expect(page.locator("#status")).to_have_text("2,974 readings")
    assert page.locator("#summary-count").inner_text() == "2,974 of 2,975"
    assert page.locator("#summary-gaps").inner_text() == "1 (1 missing)"
    assert page.locator("#gap-list li").all_inner_texts() == ["2019-01-17 02:45 – 2019-01-17 03:00: 1 missing"]
    assert page.locator("#error").is_hidden()
    # Everything the page loaded came from this server: no CDN.
    assert [url for url in page.requested if not url.startswith(live_url)] == []
    screenshot(page, "dashboard.png")


def test_changing_range_and_window_updates_chart_and_table(page):
    from playwright.sync_api import expect

    page.goto("/?meter=meterusage")
    expect_ready(page)

    page.select_option("#window", "day")
    expect(page.locator("#chart")).to_have_attribute("data-points", "31")
    expect_ready(page)
    assert page.locator("#values tbody tr").count() == 31
    assert page.locator("#values tbody tr").nth(16).locator("td").nth(1).inner_text() == "95 / 96"
    expect(page.locator("#table-info")).to_have_text("Rows 1–31 of 31")
    assert "window=day" in page.url

    page.fill("#start", "2019-01-10T00:00")
    page.fill("#end", "2019-01-12T00:00")
    expect(page.locator("#chart")).to_have_attribute("data-points", "2")
    page.select_option("#window", "hour")
    expect(page.locator("#chart")).to_have_attribute("data-points", "48")
    expect_ready(page)
    assert page.locator("#values tbody tr").first.locator("td").first.inner_text() == "2019-01-10 00:00"
    assert page.url.endswith("?meter=meterusage&start=2019-01-10T00%3A00&end=2019-01-12T00%3A00&window=hour&tz=UTC&page=1")

    csv_link = page.locator("#csv-link").get_attribute("href")
    assert "/aggregates/?" in csv_link and "format=csv" in csv_link
    lines = page.request.get(csv_link).text().splitlines()
    assert lines[0] == "start,end,count,expected_count,coverage,sum,mean,min,max"
    assert len(lines) == 1 + 48


def test_pages_of_the_table_are_in_the_url(page):
    from playwright.sync_api import expect

    page.goto("/?meter=meterusage")
    expect_ready(page)
    page.click("#next-page")
    expect(page.locator("#table-info")).to_have_text("Rows 51–100 of 2,974")
    assert "page=2" in page.url

    page.reload()
    expect_ready(page)
    expect(page.locator("#table-info")).to_have_text("Rows 51–100 of 2,974")
    assert page.locator("#values tbody tr").first.locator("td").first.inner_text() == "2019-01-01 12:45"


def test_time_zone_keeps_the_range_and_moves_the_clock(page):
    from playwright.sync_api import expect

    page.goto("/?meter=meterusage&window=day")
    expect_ready(page)
    page.fill("#tz", "Europe/Amsterdam")
    page.dispatch_event("#tz", "change")
    expect(page.locator("#dashboard")).to_have_attribute("data-state", "ready")
    expect(page.locator("#values thead th").first).to_have_text("Start (Europe/Amsterdam)")

    assert page.locator("#start").input_value() == "2019-01-01T01:15"
    assert page.locator("#end").input_value() == "2019-02-01T01:00"
    # Amsterdam days: Jan 1 from 01:15 local, ..., Feb 1 until 01:00 local.
    assert page.locator("#chart").get_attribute("data-points") == "32"
    assert page.locator("#summary-count").inner_text() == "2,974 of 2,975"


def test_a_year_of_readings_is_aggregated_by_the_server(page, year_meter):
    from playwright.sync_api import expect

    page.goto("/?meter=gen-year")
    expect_ready(page)

    expect(page.locator("#chart")).to_have_attribute("data-window", "day")
    assert page.locator("#chart").get_attribute("data-points") == "366"
    assert page.locator("#window option[value='15m']").is_disabled()
    assert page.locator("#window option[value='hour']").is_enabled()
    expect(page.locator("#table-info")).to_have_text("Rows 1–50 of 366")
    expect(page.locator("#summary-count")).to_have_text(f"{year_meter.reading_count:,} of 35,136")
    # The browser got windows, not readings.
    assert not [url for url in page.requested if "/api/v1/meters/gen-year/readings/" in url]
    screenshot(page, "dashboard-year.png")


def test_grpc_server_stopped_shows_an_error(page, make_grpc_server):
    from playwright.sync_api import expect

    running = make_grpc_server()
    with override_settings(GRPC_TARGET=running.target):
        page.goto("/?meter=meterusage")
        expect_ready(page)
        running.stop(grace=0)

        page.select_option("#window", "day")
        expect(page.locator("#dashboard")).to_have_attribute("data-state", "error")

    error = page.locator("#error")
    expect(error).to_be_visible()
    expect(error.locator("strong")).to_have_text("Service Unavailable (503)")
    assert error.inner_text().count("the gRPC service is unavailable") == 1
    screenshot(page, "dashboard-grpc-down.png")


def test_web_server_down_shows_an_error(page, live_url):
    from playwright.sync_api import expect

    page.goto("/?meter=meterusage")
    expect_ready(page)
    page.route("**/api/v1/**", lambda route: route.abort("connectionrefused"))

    page.select_option("#window", "week")

    expect(page.locator("#dashboard")).to_have_attribute("data-state", "error")
    expect(page.locator("#error strong")).to_have_text("Cannot reach the server")


def test_swagger_ui_renders_from_local_files(page, live_url):
    from playwright.sync_api import expect

    page.goto("/api/docs/")

    expect(page.locator(".swagger-ui .info .title")).to_contain_text("meterusage HTTP API")
    expect(page.locator(".opblock-summary-path").first).to_be_visible()
    assert [url for url in page.requested if not url.startswith(live_url)] == []


def test_chromium_is_debians():
    assert shutil.which("chromium") in (CHROMIUM, None)

