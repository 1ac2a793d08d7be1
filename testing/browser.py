"""Browser fixtures (a pytest plugin, loaded by conftest.py): Debian's Chromium, headless, driven by
Playwright, and pages on a live web server that fail their test on a script error.
"""
from contextlib import contextmanager
from pathlib import Path

import pytest
from django.db import connections

from testing.helpers import REPO, require

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--no-first-run",
]
ARTIFACTS = REPO / "test-artifacts"


@pytest.fixture(scope="module")
def browser():
    """Debian's Chromium, headless, driven by Playwright (whose own browser download does not work here)."""
    if not Path(CHROMIUM).exists():
        require(f"Chromium not found at {CHROMIUM}: apt-get install -y chromium (scripts/test does it when it can)")
    from playwright.sync_api import sync_playwright

    # Playwright's sync API marks an event loop as running in this thread, so Django takes the
    # tests' ORM calls for async code (they are not) and gives them a database connection of
    # their own, which must be closed before the loop goes.
    with pytest.MonkeyPatch.context() as patch, sync_playwright() as playwright:
        patch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()
        connections.close_all()


@contextmanager
def open_page(browser, base_url: str):
    """A new page on `base_url`; it records the URLs it requested (`page.requested`) and the
    script errors it met (`page.errors`), which must be none when it closes."""
    context = browser.new_context(viewport={"width": 1400, "height": 1000}, base_url=base_url)
    page = context.new_page()
    page.requested = []
    page.on("request", lambda request: page.requested.append(request.url))
    page.errors = []
    page.on("pageerror", lambda error: page.errors.append(str(error)))
    # The page's Content-Security-Policy must let everything it does through.
    page.on("console", lambda message: "Content Security Policy" in message.text and page.errors.append(message.text))
    yield page
    context.close()
    assert page.errors == []


@pytest.fixture
def page(browser, live_url):
    """A new page on the live server (see `open_page`)."""
    with open_page(browser, live_url) as page:
        yield page


def expect_ready(page):
    from playwright.sync_api import expect

    expect(page.locator("#dashboard")).to_have_attribute("data-state", "ready")


def screenshot(page, name: str) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / name), full_page=True)
