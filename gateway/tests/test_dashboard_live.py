"""Live mode of the dashboard in headless Chromium against a live web server and a real gRPC
server: readings written through WriteReadings show up within seconds, corrections replace
values, and polling stops while Live is off or the tab is hidden."""
import time
from datetime import UTC, datetime

import pytest

from readings.models import Meter
from testing.browser import expect_ready, open_page, screenshot
from testing.helpers import write_readings
from testing.servers import live_web_server

# Transactional: the gRPC server and the web server write and read with their own connections.
# The page polling the changes feed is the same on every engine (test_api_changes and the watch
# tests run on each).
pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.any_engine]

# What the page is given to show a new reading: two polls and a reload, well within 5 s.
SHOWN_WITHIN_MS = 5000
# Longer than the page waits between two polls (LIVE_POLL_MS in dashboard.js).
LONGER_THAN_A_POLL_MS = 3000
# Counts the page's asks of the changes feed as it makes them: a poll calls fetch as its timer
# fires, so the count is exact once the page's clock has been moved on.
COUNT_POLLS = """
    window.changesAsked = 0;
    const pageFetch = window.fetch;
    window.fetch = (url, ...rest) => {
        if (String(url).includes("/changes/")) window.changesAsked += 1;
        return pageFetch(url, ...rest);
    };
"""


@pytest.fixture(scope="module")
def web_url(write_grpc_server):
    """A web server in this process; `write_server` points it at the module's gRPC server."""
    with live_web_server() as url:
        yield url


@pytest.fixture
def live_page(browser, web_url, write_server):
    with open_page(browser, web_url) as page:
        yield page


@pytest.fixture
def stub(write_server):
    return write_server.stub


def polls(page) -> list[str]:
    return [url for url in page.requested if "/changes/" in url]


def asked(page) -> int:
    """Polls the page has made (its own count, see COUNT_POLLS)."""
    return page.evaluate("window.changesAsked")


def is_a_later_poll(response) -> bool:
    """A poll that continues after a cursor: the second and later of a live page."""
    return "/changes/?after=" in response.url


def test_live_mode_shows_readings_as_they_are_written(live_page, stub):
    from playwright.sync_api import expect

    page = live_page
    meter = Meter.objects.create(name="live-one", public=True).name  # the page is not signed in
    write_readings(stub, meter, (int(datetime(2019, 1, 1, 0, 15, tzinfo=UTC).timestamp()), 1.0))
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
    write_readings(stub, meter, (slot, 42.5))

    expect(latest).to_have_attribute("data-value", "42.5", timeout=SHOWN_WITHIN_MS)
    assert latest.get_attribute("data-time") == datetime.fromtimestamp(slot, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    expect(page.locator("#summary-total")).to_have_text("42.50 kWh", timeout=SHOWN_WITHIN_MS)
    expect(page.locator("#chart")).to_have_attribute("data-points", "1")

    write_readings(stub, meter, (slot, 50.0))  # a correction

    expect(latest).to_have_attribute("data-value", "50", timeout=SHOWN_WITHIN_MS)
    assert latest.get_attribute("data-replaced") == "true"
    expect(page.locator("#summary-total")).to_have_text("50.00 kWh", timeout=SHOWN_WITHIN_MS)
    screenshot(page, "dashboard-live.png")


def test_polling_stops_when_live_is_off_or_the_tab_hidden_and_resumes_with_its_cursor(live_page, stub):
    from playwright.sync_api import expect

    page = live_page
    # The page's clock is Playwright's: it runs as the real one does, and can be moved on at once.
    page.clock.install()
    page.add_init_script(COUNT_POLLS)
    meter = Meter.objects.create(name="live-two", public=True).name
    with page.expect_response(is_a_later_poll):
        page.goto(f"/?meter={meter}&live=1")
    expect(page.locator("#dashboard")).to_have_attribute("data-live", "on")
    expect_ready(page)
    assert len(polls(page)) >= 2

    page.evaluate("""() => {
        Object.defineProperty(document, "hidden", { value: true, configurable: true });
        document.dispatchEvent(new Event("visibilitychange"));
    }""")
    expect(page.locator("#dashboard")).to_have_attribute("data-live", "paused")
    hidden_at = asked(page)
    slot = int(time.time() // 900 * 900)
    write_readings(stub, meter, (slot, 7.0))
    page.clock.run_for(LONGER_THAN_A_POLL_MS)
    assert asked(page) == hidden_at

    with page.expect_response(is_a_later_poll):
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
    off_at = asked(page)
    page.clock.run_for(LONGER_THAN_A_POLL_MS)
    assert asked(page) == off_at
    assert "live=1" not in page.url
