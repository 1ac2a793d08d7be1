"""Signing in to the dashboard (/accounts/login/) and out (/accounts/logout/), what the dashboard
says about who is signed in, and django-axes' lockout of the sign-in: per username and address,
answered with a page that says for how long. With Django's test client, then in headless Chromium
against a live web server and a real gRPC server (screenshots in test-artifacts/)."""
import json
import re
from datetime import timedelta
from io import StringIO

import pytest
from django.contrib.auth.models import User
from django.core.management import call_command
from django.test import Client, override_settings

from accounts.models import Account
from gateway.views import duration_text
from meterproject.middleware import STRICT
from readings.models import Meter
from testing.browser import expect_ready, open_page, screenshot
from testing.servers import live_web_server

pytestmark = pytest.mark.django_db

RIGHT = "a-long-right-password"
ADDRESS = "192.0.2.10"
# Exact figures for the lockout tests, whatever the environment sets.
LOCKOUT = override_settings(AXES_FAILURE_LIMIT=5, AXES_COOLOFF_TIME=timedelta(minutes=15))


@pytest.fixture(autouse=True)
def fast_password_hashing(settings):
    """A cheap hash: these tests check dozens of passwords, and what they test is not the hash."""
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture
def ann():
    return User.objects.create_user("ann", password=RIGHT)


def sign_in(client, password=RIGHT, username="ann", address=ADDRESS, next_url=None):
    data = {"username": username, "password": password}
    if next_url is not None:
        data["next"] = next_url
    return client.post("/accounts/login/", data, REMOTE_ADDR=address)


def dashboard_config(page: str) -> dict:
    return json.loads(re.search(r'<script id="dashboard-config" type="application/json">(.*?)</script>', page).group(1))


def test_login_page_renders(client):
    response = client.get("/accounts/login/?next=/%3Fmeter%3Dmeterusage")

    assert response.status_code == 200
    assert [t.name for t in response.templates][:2] == ["gateway/login.html", "gateway/base.html"]
    page = response.content.decode()
    assert '<form id="sign-in-form" class="sign-in" method="post" action="/accounts/login/">' in page
    assert 'name="csrfmiddlewaretoken"' in page
    assert re.search(r'<input type="text" name="username" [^>]*autocomplete="username"[^>]*required id="id_username">', page)
    assert re.search(r'<input type="password" name="password" [^>]*autocomplete="current-password"[^>]*required id="id_password">', page)
    assert '<input type="hidden" name="next" value="/?meter=meterusage">' in page
    assert '<link rel="stylesheet" href="/static/readings/dashboard.css">' in page
    # No "Sign in" link on the sign-in page itself.
    assert 'id="sign-in"' not in page
    assert response["Content-Security-Policy"] == STRICT


def test_right_password_signs_in_and_goes_to_the_dashboard(client, ann):
    response = sign_in(client)

    assert response.status_code == 302
    assert response["Location"] == "/"
    assert client.session["_auth_user_id"] == str(ann.pk)


def test_sign_in_returns_to_the_view_it_was_asked_from_and_only_to_this_site(client, ann):
    assert sign_in(client, next_url="/?meter=meterusage&window=day")["Location"] == "/?meter=meterusage&window=day"
    client.logout()
    assert sign_in(client, next_url="https://elsewhere.example/")["Location"] == "/"


def test_wrong_password_shows_the_form_again_with_its_error(client, ann):
    response = sign_in(client, password="wrong")

    assert response.status_code == 200
    page = response.content.decode()
    assert '<div id="sign-in-error" class="error" role="alert"><p>Please enter a correct username and password. Note that both fields may be case-sensitive.</p></div>' in page
    assert 'value="ann"' in page  # the username is kept, the password is not
    assert "_auth_user_id" not in client.session


def test_a_signed_in_user_asking_for_the_sign_in_page_goes_to_the_dashboard(client, ann):
    client.force_login(ann)

    response = client.get("/accounts/login/")

    assert response.status_code == 302
    assert response["Location"] == "/"


def test_dashboard_shows_the_user_signed_in_and_a_sign_out_form(client, ann):
    sign_in(client)

    response = client.get("/?meter=meterusage")

    page = response.content.decode()
    assert '<span id="signed-in-as">Signed in as <strong>ann</strong></span>' in page
    form = re.search(r'<form id="sign-out" method="post" action="/accounts/logout/">(.*?)</form>', page, re.S).group(1)
    assert 'name="csrfmiddlewaretoken"' in form
    assert '<input type="hidden" name="next" value="/?meter=meterusage">' in form
    assert '<button type="submit">Sign out</button>' in form
    assert 'id="sign-in"' not in page
    assert '<p id="audience" class="audience">You see your accounts\' meters and public meters.</p>' in page
    assert dashboard_config(page)["signedIn"] is True
    # The page differs by who asks: caches keep one per session cookie.
    assert "Cookie" in response["Vary"]


def test_dashboard_of_an_anonymous_visitor_offers_to_sign_in(client):
    page = client.get("/?meter=meterusage&window=day").content.decode()

    assert '<a id="sign-in" class="button" href="/accounts/login/?next=/%3Fmeter%3Dmeterusage%26window%3Dday">Sign in</a>' in page
    assert '<p id="audience" class="audience">Not signed in: you see public meters only.</p>' in page
    assert 'id="sign-out"' not in page
    assert dashboard_config(page)["signedIn"] is False


def test_dashboard_tells_staff_they_see_every_meter(client):
    client.force_login(User.objects.create_user("sam", password=RIGHT, is_staff=True))

    page = client.get("/").content.decode()

    assert '<p id="audience" class="audience">Staff: you see every meter.</p>' in page


def test_sign_out_works(client, ann):
    sign_in(client)
    page = client.get("/").content.decode()
    token = re.search(r'<form id="sign-out".*?name="csrfmiddlewaretoken" value="([^"]+)"', page, re.S).group(1)

    response = client.post("/accounts/logout/", {"csrfmiddlewaretoken": token, "next": "/?meter=meterusage"})

    assert response.status_code == 302
    assert response["Location"] == "/?meter=meterusage"
    assert "_auth_user_id" not in client.session
    assert 'id="sign-in"' in client.get("/").content.decode()


def test_sign_out_without_a_next_lands_on_the_dashboard(client, ann):
    client.force_login(ann)

    response = client.post("/accounts/logout/")

    assert response.status_code == 302
    assert response["Location"] == "/"


def test_sign_out_takes_post_only(client, ann):
    client.force_login(ann)

    assert client.get("/accounts/logout/").status_code == 405
    assert client.session["_auth_user_id"] == str(ann.pk)


def test_sign_out_needs_the_csrf_token(ann):
    client = Client(enforce_csrf_checks=True)
    client.force_login(ann)

    assert client.post("/accounts/logout/").status_code == 403
    assert client.session["_auth_user_id"] == str(ann.pk)


@LOCKOUT
def test_five_wrong_passwords_lock_the_username_at_that_address(client, ann):
    for _ in range(4):
        assert sign_in(client, password="wrong").status_code == 200  # the form again, with its error

    fifth = sign_in(client, password="wrong")
    sixth = sign_in(client, password=RIGHT)

    for response in (fifth, sixth):
        assert response.status_code == 429
        assert response["Retry-After"] == "900"
        assert "gateway/locked_out.html" in [t.name for t in response.templates]
    page = sixth.content.decode()
    assert "<strong>Too many failed sign-ins for “ann” from this address.</strong>" in page
    assert re.sub(r"\s+", " ", "".join(re.findall(r"<p>(Signing in is refused.*?)</p>", page, re.S))) == (
        "Signing in is refused for 15 minutes, even with the right password. Each attempt in the "
        "meantime starts the wait again."
    )
    assert '<a href="/accounts/login/">Back to sign in</a>' in page
    assert sixth["Content-Security-Policy"] == STRICT
    assert "_auth_user_id" not in client.session


@LOCKOUT
def test_the_lockout_is_per_username_and_address(client, ann):
    User.objects.create_user("bob", password=RIGHT)
    for _ in range(5):
        sign_in(client, password="wrong")
    assert sign_in(client).status_code == 429

    # Another user from the same address signs in...
    assert sign_in(client, username="bob").status_code == 302
    client.logout()
    # ...and so does the same user from another address.
    assert sign_in(client, address="198.51.100.7").status_code == 302


@LOCKOUT
def test_a_success_clears_the_failures_before_it(client, ann):
    for _ in range(4):
        sign_in(client, password="wrong")
    assert sign_in(client).status_code == 302
    client.logout()

    for _ in range(4):
        assert sign_in(client, password="wrong").status_code == 200
    assert sign_in(client).status_code == 302


@override_settings(AXES_FAILURE_LIMIT=5, AXES_COOLOFF_TIME=None)
def test_a_lockout_without_a_cool_off_says_an_administrator_lifts_it(client, ann):
    for _ in range(5):
        sign_in(client, password="wrong")

    response = sign_in(client)

    assert response.status_code == 429
    assert "Retry-After" not in response
    assert "<p>Signing in is refused until an administrator lifts the lock.</p>" in response.content.decode()


@LOCKOUT
def test_admin_sign_in_gets_the_same_lockout_page(client):
    User.objects.create_user("ann", password=RIGHT, is_staff=True)
    for _ in range(5):
        client.post("/admin/login/?next=/admin/", {"username": "ann", "password": "wrong"}, REMOTE_ADDR=ADDRESS)

    response = client.post("/admin/login/?next=/admin/", {"username": "ann", "password": RIGHT}, REMOTE_ADDR=ADDRESS)

    assert response.status_code == 429
    assert '<a href="/admin/login/?next=/admin/">Back to sign in</a>' in response.content.decode()


@pytest.mark.parametrize(("delta", "text"), [
    (timedelta(minutes=15), "15 minutes"),
    (timedelta(minutes=1), "1 minute"),
    (timedelta(minutes=1.5), "90 seconds"),
    (timedelta(seconds=1), "1 second"),
    (timedelta(hours=2), "2 hours"),
    (timedelta(minutes=90), "90 minutes"),
    (timedelta(days=1), "1 day"),
])
def test_duration_text(delta, text):
    assert duration_text(delta) == text


# ---- In the browser ----------------------------------------------------------------------------
# Transactional: the live web server and the gRPC server read and write with their own connections
# (a sign-in writes its session and django-axes' records).


@pytest.fixture(scope="module")
def web_url(write_grpc_server):
    """A web server in this process; `write_server` points it at the module's gRPC server."""
    with live_web_server() as url:
        yield url


@pytest.fixture
def browser_page(browser, web_url, write_server):
    with open_page(browser, web_url) as page:
        yield page


@pytest.fixture
def households(write_server, tmp_path):
    """Two accounts, each with a member (ann, bob) and a private meter with a day of readings, and
    a public meter of bob's account."""
    path = tmp_path / "day.csv"
    path.write_text("time,meterusage\n" + "".join(f"2019-01-01 {hour:02d}:00:00,{hour}.5\n" for hour in range(1, 24)))
    for member, account, meter in (("ann", "ann-household", "ann-house"), ("bob", "bob-household", "bob-house")):
        Account.objects.create(name=account).members.add(User.objects.create_user(member, password=RIGHT))
        call_command("import_readings", str(path), "--meter", meter, "--account", account, stdout=StringIO())
    call_command("import_readings", str(path), "--meter", "bob-street", "--account", "bob-household", stdout=StringIO())
    Meter.objects.filter(name="bob-street").update(public=True)


def sign_in_through_the_form(page, username: str) -> None:
    from playwright.sync_api import expect

    page.click("#sign-in")
    expect(page.locator("#sign-in-title")).to_have_text("Sign in")
    page.fill("#id_username", username)
    page.fill("#id_password", RIGHT)
    page.click("#sign-in-form button[type=submit]")


@pytest.mark.django_db(transaction=True)
def test_signing_in_through_the_form_shows_the_username(browser_page, households):
    from playwright.sync_api import expect

    page = browser_page
    page.goto("/?meter=bob-street&window=hour")
    expect_ready(page)
    expect(page.locator("#audience")).to_have_text("Not signed in: you see public meters only.")
    before = page.url
    assert "start=" in before  # the view's state, which the sign-in link carries

    sign_in_through_the_form(page, "ann")

    # Back on the view the sign-in started from, signed in.
    expect(page.locator("#signed-in-as")).to_have_text("Signed in as ann")
    expect_ready(page)
    assert page.url == before
    expect(page.locator("#audience")).to_have_text("You see your accounts' meters and public meters.")
    assert page.locator("#sign-in").count() == 0
    # The page's calls to the API carry the session.
    with page.expect_request("**/api/v1/meters/?*") as asked:
        page.reload()
    assert "sessionid=" in asked.value.all_headers().get("cookie", "")
    expect_ready(page)
    screenshot(page, "dashboard-signed-in.png")

    page.click("#sign-out button")

    expect(page.locator("#sign-in")).to_be_visible()
    expect_ready(page)
    assert page.url == before
    assert "sessionid" not in [cookie["name"] for cookie in page.context.cookies()]


@pytest.mark.django_db(transaction=True)
def test_a_wrong_password_in_the_browser_shows_the_form_again(browser_page, households):
    from playwright.sync_api import expect

    page = browser_page
    page.goto("/accounts/login/")
    page.fill("#id_username", "ann")
    page.fill("#id_password", "not-the-password")
    page.click("#sign-in-form button[type=submit]")

    expect(page.locator("#sign-in-error")).to_contain_text("Please enter a correct username and password.")
    assert page.locator("#id_username").input_value() == "ann"
    screenshot(page, "login-refused.png")


@pytest.mark.django_db(transaction=True)
@LOCKOUT
def test_the_lockout_page_in_the_browser(browser_page, households):
    from playwright.sync_api import expect

    page = browser_page
    page.goto("/accounts/login/")
    for _ in range(5):
        page.fill("#id_username", "bob")
        page.fill("#id_password", "not-the-password")
        page.click("#sign-in-form button[type=submit]")

    expect(page.locator("#locked-out-title")).to_have_text("Sign-in locked")
    expect(page.locator("#locked-out strong")).to_have_text("Too many failed sign-ins for “bob” from this address.")
    expect(page.locator("#locked-out p")).to_have_text(
        "Signing in is refused for 15 minutes, even with the right password. Each attempt in the meantime starts the wait again."
    )
    screenshot(page, "login-locked-out.png")


# Passes once the API answers with only what the caller may see, which this branch does not do yet.
@pytest.mark.django_db(transaction=True)
def test_a_member_sees_their_accounts_meters_and_public_ones_not_anothers_private_one(browser_page, households):
    from playwright.sync_api import expect

    page = browser_page
    page.goto("/")
    expect_ready(page)
    sign_in_through_the_form(page, "ann")
    expect(page.locator("#signed-in-as")).to_have_text("Signed in as ann")
    expect_ready(page)

    choices = [option.get_attribute("value") for option in page.locator("#meter option").all()]
    assert "ann-house" in choices and "bob-street" in choices
    assert "bob-house" not in choices
