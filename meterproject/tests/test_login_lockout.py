"""Sign-in lockout (django-axes): after repeated failures for a username from one address, that
pair is refused even with the right password, for a while; other addresses are not."""
from io import StringIO

import pytest
from django.conf import settings
from django.contrib.auth.models import User
from django.core.management import call_command

pytestmark = pytest.mark.django_db

RIGHT = "the-right-password"


def sign_in(client, password: str, address: str = "192.0.2.10"):
    return client.post("/admin/login/?next=/admin/", {"username": "ann", "password": password}, REMOTE_ADDR=address)


def test_repeated_failures_lock_a_username_at_an_address_until_reset(client):
    User.objects.create_user("ann", password=RIGHT, is_staff=True)
    for _ in range(settings.AXES_FAILURE_LIMIT - 1):
        assert sign_in(client, "wrong").status_code == 200  # the form again, with its error
    assert sign_in(client, "wrong").status_code == 429  # the failure that reaches the limit locks

    assert sign_in(client, RIGHT).status_code == 429
    assert sign_in(client, RIGHT, address="198.51.100.7").status_code == 302  # another address signs in

    call_command("axes_reset", stdout=StringIO())
    client.logout()
    assert sign_in(client, RIGHT).status_code == 302


def test_a_success_clears_the_failures_before_it(client):
    User.objects.create_user("ann", password=RIGHT, is_staff=True)
    for _ in range(settings.AXES_FAILURE_LIMIT - 1):
        sign_in(client, "wrong")
    assert sign_in(client, RIGHT).status_code == 302
    client.logout()
    for _ in range(settings.AXES_FAILURE_LIMIT - 1):
        sign_in(client, "wrong")
    assert sign_in(client, RIGHT).status_code == 302
