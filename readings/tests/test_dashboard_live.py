"""Live mode of the dashboard in headless Chromium against a live web server and a real gRPC
server: readings written through WriteReadings show up within seconds, corrections replace
values, and polling stops while Live is off or the tab is hidden."""
import time
from datetime import UTC, datetime

import grpc
import pytest
from django.test import override_settings
from django.test.testcases import LiveServerThread
from django.contrib.staticfiles.handlers import StaticFilesHandler

from grpc_api.gen.meterusage.v1 import meter_usage_pb2 as pb
from grpc_api.gen.meterusage.v1 import meter_usage_pb2_grpc
from grpc_api.server import create_server
from readings.models import Meter
from testing.browser import CHROMIUM_ARGS, expect_ready, screenshot  # noqa: F401  (the browser fixture's flags)

# Transactional: the gRPC server and the web server write and read with their own connections.
pytestmark = pytest.mark.django_db(transaction=True)

WRITER = (("authorization", "Bearer w-token"),)
# What the page is given to show a new reading: two polls and a reload, well within 5 s.
SHOWN_WITHIN_MS = 5000


@pytest.fixture(scope="module")
def servers(django_db_setup, django_db_blocker):
    """A gRPC server and a web server in this process pointed at it (a thread per request)."""
    running = create_server("127.0.0.1:0", max_workers=8)
    with override_settings(
        GRPC_TARGET=f"127.0.0.1:{running.port}", GRPC_WRITE_TOKENS=["w-token"],
        READINGS_SOURCES={"default": {"BACKEND": "readings.sources.sql.SqlSource"}},
    ), grpc.insecure_channel(f"127.0.0.1:{running.port}") as channel:
        web = LiveServerThread("127.0.0.1", StaticFilesHandler, port=0)
        web.daemon = True
        web.start()
        web.is_ready.wait()
        if web.error:
            raise web.error
        yield f"http://127.0.0.1:{web.port}", meter_usage_pb2_grpc.MeterUsageServiceStub(channel)
        web.terminate()
    running.stop(grace=1)


@pytest.fixture
def live_page(browser, servers):
    url, _ = servers
    context = browser.new_context(viewport={"width": 1400, "height": 1000}, base_url=url)
    page = context.new_page()
    page.requested = []
    page.on("request", lambda request: page.requested.append(request.url))
    page.errors = []
    page.on("pageerror", lambda error: page.errors.append(str(error)))
    yield page
    context.close()
    assert page.errors == []


@pytest.fixture
def stub(servers):
    return servers[1]


def write(stub, meter: str, epoch: int, value: float):
    reading = pb.ReadingInput(meter=meter, value=value)
    reading.time.seconds = epoch
    stub.WriteReadings(pb.WriteReadingsRequest(readings=[reading]), metadata=WRITER)


def polls(page) -> list[str]:
    return [url for url in page.requested if "/changes/" in url]


def test_live_mode_shows_readings_as_they_are_written(live_page, stub):
    from playwright.sync_api import expect

    page = live_page
    meter = Meter.objects.create(name="live-one").name
    write(stub, meter, int(datetime(2019, 1, 1, 0, 15, tzinfo=UTC).timestamp()), 1.0)
    page.goto(f"/?meter={meter}")
    expect_ready(page)
    assert page.locator("#start").input_value() == "2019-01-01T00:15"

    page.check("#live")

    # The range that ended in 2019 moved to the last 24 hours.
    expect(page.locator("#dashboard")).to_have_attribute("data-live", "on")
    expect_ready(page)
    assert "live=1" in page.url
    now = time.time()
    ends = {datetime.fromtimestamp((t // 3600 + 1) * 3600, UTC).strftime("%Y-%m-%dT%H:%M") for t in (now - 5, now)}
    assert page.locator("#end").input_value() in ends
    latest = page.locator("#summary-latest")

    slot = int(now // 900 * 900)
    write(stub, meter, slot, 42.5)

    expect(latest).to_have_attribute("data-value", "42.5", timeout=SHOWN_WITHIN_MS)
    assert latest.get_attribute("data-time") == datetime.fromtimestamp(slot, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    expect(page.locator("#summary-total")).to_have_text("42.50 kWh", timeout=SHOWN_WITHIN_MS)
    expect(page.locator("#chart")).to_have_attribute("data-points", "1")

    write(stub, meter, slot, 50.0)  # a correction

    expect(latest).to_have_attribute("data-value", "50", timeout=SHOWN_WITHIN_MS)
    assert latest.get_attribute("data-replaced") == "true"
    expect(page.locator("#summary-total")).to_have_text("50.00 kWh", timeout=SHOWN_WITHIN_MS)
    screenshot(page, "dashboard-live.png")


def test_polling_stops_when_live_is_off_or_the_tab_hidden_and_resumes_with_its_cursor(live_page, stub):
    from playwright.sync_api import expect

    page = live_page
    meter = Meter.objects.create(name="live-two").name
    page.goto(f"/?meter={meter}&live=1")
    expect(page.locator("#dashboard")).to_have_attribute("data-live", "on")
    expect_ready(page)
    page.wait_for_timeout(2500)
    assert len(polls(page)) >= 2

    page.evaluate("""() => {
        Object.defineProperty(document, "hidden", { value: true, configurable: true });
        document.dispatchEvent(new Event("visibilitychange"));
    }""")
    expect(page.locator("#dashboard")).to_have_attribute("data-live", "paused")
    hidden_at = len(polls(page))
    slot = int(time.time() // 900 * 900)
    write(stub, meter, slot, 7.0)
    page.wait_for_timeout(3000)
    assert len(polls(page)) == hidden_at

    page.evaluate("""() => {
        Object.defineProperty(document, "hidden", { value: false, configurable: true });
        document.dispatchEvent(new Event("visibilitychange"));
    }""")
    # Shown again: the next poll continues after the cursor it had, so the reading written
    # meanwhile arrives.
    expect(page.locator("#summary-latest")).to_have_attribute("data-value", "7", timeout=SHOWN_WITHIN_MS)
    assert "after=" in polls(page)[hidden_at]

    page.uncheck("#live")
    expect(page.locator("#dashboard")).to_have_attribute("data-live", "off")
    off_at = len(polls(page))
    page.wait_for_timeout(2500)
    assert len(polls(page)) == off_at
    assert "live=1" not in page.url
