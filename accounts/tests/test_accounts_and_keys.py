"""Accounts own meters; API keys are made once, kept as a digest and stop at once when revoked;
the commands that manage them."""
import hashlib
from datetime import timedelta
from io import StringIO

import pytest
from django.contrib.auth import get_user_model
from django.core.management import CommandError, call_command
from django.db import connection
from django.utils import timezone

from accounts.keys import key_for, prefix_of
from accounts.models import Account, ApiKey
from readings.models import Meter

pytestmark = pytest.mark.django_db


def run(*args) -> list[str]:
    out = StringIO()
    call_command(*args, stdout=out, stderr=StringIO())
    return out.getvalue().splitlines()


def made_key(*args) -> str:
    return run("apikey", "create", *args)[-1]


def test_account_add_creates_the_account_and_its_users_once():
    run("account", "add", "household-7", "--user", "ann", "--user", "bob")
    lines = run("account", "add", "household-7", "--user", "ann")

    account = Account.objects.get(name="household-7")
    assert sorted(account.members.values_list("username", flat=True)) == ["ann", "bob"]
    assert not get_user_model().objects.get(username="ann").has_usable_password()
    assert lines[-1] == "Account household-7 exists; members: ann, bob."


def test_import_readings_with_an_account_makes_the_meter_that_accounts(reference_csv):
    run("account", "add", "utility-north")
    run("import_readings", str(reference_csv), "--meter", "north-1", "--account", "utility-north")

    meter = Meter.objects.get(name="north-1")
    assert meter.account.name == "utility-north"
    assert meter.reading_count == 2974


def test_import_readings_refuses_an_unknown_account_or_another_accounts_meter(reference_csv):
    with pytest.raises(CommandError, match="no account named 'nobody'"):
        run("import_readings", str(reference_csv), "--meter", "m-1", "--account", "nobody")
    assert not Meter.objects.filter(name="m-1").exists()

    run("account", "add", "a")
    run("account", "add", "b")
    run("import_readings", str(reference_csv), "--meter", "m-1", "--account", "a")
    with pytest.raises(CommandError, match="meter 'm-1' is not account 'b'"):
        run("import_readings", str(reference_csv), "--meter", "m-1", "--account", "b")
    assert Meter.objects.get(name="m-1").account.name == "a"


def test_a_key_is_shown_once_and_only_its_digest_is_stored():
    run("account", "add", "home", "--user", "ann")
    text = made_key("ann", "--scope", "write")

    prefix = prefix_of(text)
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT * FROM {ApiKey._meta.db_table}")
        stored = " ".join(str(value) for row in cursor.fetchall() for value in row)
    assert prefix in stored
    assert text not in stored and text.split("_", 2)[2] not in stored
    assert hashlib.sha256(text.encode()).hexdigest() in stored
    key = key_for(text)
    assert key.user.username == "ann" and key.scope == "write"
    assert key.last_used_at is not None


def test_only_the_whole_key_is_a_key():
    run("account", "add", "home", "--user", "ann")
    text = made_key("ann")

    assert key_for(text) is not None
    for wrong in [text[:-1] + ("A" if text[-1] != "A" else "B"), text + "x", text.split("_", 2)[0] + "_" + prefix_of(text),
                  "", "Bearer " + text, text.upper()]:
        assert key_for(wrong) is None, wrong


def test_a_revoked_key_stops_at_once_and_an_expired_one_at_its_time():
    run("account", "add", "home", "--user", "ann")
    revoked, expiring = made_key("ann"), made_key("ann", "--expires-in", "1")

    assert key_for(revoked) is not None
    assert run("apikey", "revoke", prefix_of(revoked))[-1].startswith(f"Key {prefix_of(revoked)} of ann revoked")
    assert key_for(revoked) is None

    assert key_for(expiring) is not None
    ApiKey.objects.filter(prefix=prefix_of(expiring)).update(expires_at=timezone.now() - timedelta(seconds=1))
    assert key_for(expiring) is None


def test_a_key_of_a_deactivated_user_stops():
    run("account", "add", "home", "--user", "ann")
    text = made_key("ann")
    get_user_model().objects.filter(username="ann").update(is_active=False)
    assert key_for(text) is None


def test_a_key_may_be_limited_to_meters_and_the_list_says_so():
    run("account", "add", "home", "--user", "ann")
    Meter.objects.create(name="kitchen")
    text = made_key("ann", "--meter", "kitchen")

    assert list(key_for(text).meters.values_list("name", flat=True)) == ["kitchen"]
    (line,) = run("apikey", "list")
    assert line.startswith(f"{prefix_of(text)}  ann  read  meters=kitchen  expires=never")
    assert line.endswith("active")


@pytest.mark.parametrize("args, message", [
    (["nobody"], "no user named 'nobody'"),
    (["ann", "--meter", "no-such-meter"], "no meter named 'no-such-meter'"),
    (["ann", "--expires-in", "0"], "--expires-in 0: give a number of days above 0"),
])
def test_apikey_create_names_what_is_wrong(args, message):
    run("account", "add", "home", "--user", "ann")
    with pytest.raises(CommandError, match=message):
        made_key(*args)
    assert not ApiKey.objects.exists()


def test_revoking_an_unknown_prefix_is_an_error():
    with pytest.raises(CommandError, match="no key with prefix 'abcdefgh'"):
        run("apikey", "revoke", "abcdefgh")


def test_admin_makes_a_key_shows_it_once_and_revokes_keys(admin_client):
    run("account", "add", "home", "--user", "ann")
    ann = get_user_model().objects.get(username="ann")
    kitchen = Meter.objects.create(name="kitchen")

    response = admin_client.post(
        "/admin/accounts/apikey/add/", {"user": ann.pk, "scope": "read", "meters": [kitchen.pk]}, follow=True,
    )
    (shown,) = [str(m) for m in response.context["messages"] if "shown this once" in str(m)]
    text = shown.rsplit(" ", 1)[1]
    key = key_for(text)
    assert key.user == ann and list(key.meters.all()) == [kitchen]
    assert ApiKey.objects.count() == 1

    admin_client.post("/admin/accounts/apikey/", {"action": "revoke", "_selected_action": [key.pk]})
    assert key_for(text) is None
