"""Third-party apps a user authorises (OAuth 2, authorization code with PKCE): the consent page
names the app, the scopes and the user's meters; the code becomes a token only with its verifier;
the token is a caller that sees the user's meters, writes only with the write scope, and stops
when it expires or is revoked."""
import base64
import hashlib
import secrets
from datetime import timedelta
from urllib.parse import parse_qs, urlencode, urlsplit

import grpc
import pytest
from django.contrib.auth import get_user_model
from django.test import Client
from django.utils import timezone
from oauth2_provider.models import AccessToken, Application, Grant
from rest_framework.test import APIClient

from accounts.access import NotSignedIn, caller_for_bearer, forget_resolved
from accounts.models import Account
from grpc_api.gen.meterusage.v1 import meter_usage_pb2 as pb
from readings.models import Meter

pytestmark = pytest.mark.django_db

REDIRECT_URI = "https://app.example.com/callback"


def pkce_pair() -> tuple[str, str]:
    """A code verifier and its S256 challenge (RFC 7636)."""
    verifier = secrets.token_urlsafe(48)
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
    return verifier, challenge


@pytest.fixture
def app():
    return Application.objects.create(
        name="Green Button Viewer", client_type=Application.CLIENT_PUBLIC,
        authorization_grant_type=Application.GRANT_AUTHORIZATION_CODE, redirect_uris=REDIRECT_URI,
    )


@pytest.fixture
def ann():
    """A member of household-7, which owns two meters; household-9 owns another."""
    user = get_user_model().objects.create_user("ann")
    mine = Account.objects.create(name="household-7")
    mine.members.add(user)
    theirs = Account.objects.create(name="household-9")
    Meter.objects.create(name="house-7-main", account=mine)
    Meter.objects.create(name="house-7-solar", account=mine)
    Meter.objects.create(name="house-9-main", account=theirs)
    return user


def signed_in(user) -> Client:
    client = Client()
    client.force_login(user)  # django-axes refuses client.login() without a request
    return client


def authorize_query(app, *, challenge: str | None, scope: str = "read", method: str = "S256") -> dict:
    query = {"response_type": "code", "client_id": app.client_id, "redirect_uri": REDIRECT_URI,
             "scope": scope, "state": "s-42"}
    if challenge is not None:
        query |= {"code_challenge": challenge, "code_challenge_method": method}
    return query


def approve(client, app, *, challenge: str, scope: str) -> str:
    """The code the consent page's Authorise button sends the app to its redirect URI with."""
    answer = client.post("/o/authorize/", authorize_query(app, challenge=challenge, scope=scope) | {"allow": "Authorise"})
    assert answer.status_code == 302
    location = urlsplit(answer["Location"])
    assert f"{location.scheme}://{location.netloc}{location.path}" == REDIRECT_URI
    query = parse_qs(location.query)
    assert query["state"] == ["s-42"]
    assert query["iss"] == ["http://testserver"]  # RFC 9207: which server answered
    return query["code"][0]


def exchange(app, code: str, verifier: str):
    return Client().post("/o/token/", {
        "grant_type": "authorization_code", "code": code, "redirect_uri": REDIRECT_URI,
        "client_id": app.client_id, "code_verifier": verifier,
    })


def token_of(user, app, *, scope: str) -> dict:
    verifier, challenge = pkce_pair()
    code = approve(signed_in(user), app, challenge=challenge, scope=scope)
    answer = exchange(app, code, verifier)
    assert answer.status_code == 200, answer.content
    return answer.json()


def test_the_consent_page_names_the_app_the_scopes_and_the_users_meters(app, ann):
    _, challenge = pkce_pair()

    page = signed_in(ann).get("/o/authorize/", authorize_query(app, challenge=challenge, scope="read write"))

    assert page.status_code == 200
    assert page.templates[0].name == "oauth2_provider/authorize.html"
    html = page.content.decode()
    assert "Green Button Viewer" in html
    assert "read the readings of your meters and add readings to them" in html
    assert "house-7-main" in html and "house-7-solar" in html
    assert "house-9-main" not in html
    # The answer redirects to the app: the page's forms may go there.
    assert "form-action 'self' https://app.example.com;" in page["Content-Security-Policy"]


def test_the_consent_page_says_every_meter_to_staff(app, ann):
    operator = get_user_model().objects.create_user("operator", is_staff=True)
    _, challenge = pkce_pair()

    page = signed_in(operator).get("/o/authorize/", authorize_query(app, challenge=challenge))

    assert page.status_code == 200
    assert "every meter" in page.content.decode()
    assert "house-9-main" not in page.content.decode()


def test_a_user_who_is_not_signed_in_is_sent_to_sign_in_first(app, settings):
    _, challenge = pkce_pair()
    query = urlencode(authorize_query(app, challenge=challenge))

    answer = Client().get(f"/o/authorize/?{query}")

    assert answer.status_code == 302
    assert answer["Location"].startswith(f"{settings.LOGIN_URL}?next=/o/authorize/")


def test_the_token_is_a_caller_that_sees_the_users_meters_and_reads_only(app, ann):
    token = token_of(ann, app, scope="read")
    forget_resolved()

    caller = caller_for_bearer(token["access_token"])

    assert caller.name == "oauth:ann"
    assert token["scope"] == "read"
    assert token["expires_in"] == 3600
    assert [meter.name for meter in Meter.objects.order_by("name") if caller.sees(meter)] == ["house-7-main", "house-7-solar"]
    assert not caller.may_write
    # Kept as a checksum only: the token itself is not in the database.
    assert AccessToken.objects.get().token == ""


def test_a_write_scope_token_may_write_the_users_meters(app, ann):
    token = token_of(ann, app, scope="read write")
    forget_resolved()

    caller = caller_for_bearer(token["access_token"])

    assert caller.may_write
    caller.check_write(Meter.objects.get(name="house-7-main"))
    assert not caller.owns(Meter.objects.get(name="house-9-main"))


def test_a_code_is_not_exchanged_without_its_verifier_nor_twice(app, ann):
    verifier, challenge = pkce_pair()
    code = approve(signed_in(ann), app, challenge=challenge, scope="read")

    wrong = exchange(app, code, pkce_pair()[0])

    assert wrong.status_code == 400
    assert wrong.json()["error"] == "invalid_grant"
    assert AccessToken.objects.count() == 0


def error_sent_to_the_app(answer) -> dict:
    assert answer.status_code == 302  # back to the app, with an error instead of a code
    sent = parse_qs(urlsplit(answer["Location"]).query)
    assert "code" not in sent
    return sent


def test_an_authorization_request_without_an_s256_code_challenge_is_refused(app, ann):
    client = signed_in(ann)

    missing = error_sent_to_the_app(client.get("/o/authorize/", authorize_query(app, challenge=None)))
    plain = error_sent_to_the_app(client.post(
        "/o/authorize/", authorize_query(app, challenge="x" * 43, method="plain") | {"allow": "Authorise"},
    ))

    assert missing["error"] == ["invalid_request"]
    assert missing["error_description"] == ["Code challenge required."]
    assert plain["error"] == ["invalid_request"]
    assert plain["error_description"] == ['Unsupported "plain" code_challenge_method; use "S256".']
    assert Grant.objects.count() == 0


def test_a_refresh_token_is_rotated_and_a_replayed_one_refused(app, ann):
    token = token_of(ann, app, scope="read")
    refresh = {"grant_type": "refresh_token", "refresh_token": token["refresh_token"], "client_id": app.client_id}

    renewed = Client().post("/o/token/", refresh)
    replayed = Client().post("/o/token/", refresh)

    assert renewed.status_code == 200
    assert renewed.json()["refresh_token"] != token["refresh_token"]
    assert replayed.status_code == 400
    forget_resolved()
    with pytest.raises(NotSignedIn):  # the replay revoked the renewed token too
        caller_for_bearer(renewed.json()["access_token"])


def test_an_expired_or_revoked_token_or_one_of_an_inactive_user_is_not_signed_in(app, ann):
    expired, revoked, inactive = (token_of(ann, app, scope="read")["access_token"] for _ in range(3))
    forget_resolved()
    for text in (expired, revoked, inactive):
        assert caller_for_bearer(text).name == "oauth:ann"

    AccessToken.objects.filter(pk=AccessToken.objects.order_by("pk").first().pk).update(expires=timezone.now() - timedelta(seconds=1))
    assert Client().post("/o/revoke_token/", {"token": revoked, "client_id": app.client_id}).status_code == 200
    forget_resolved()
    for text in (expired, revoked):
        with pytest.raises(NotSignedIn):
            caller_for_bearer(text)

    ann.is_active = False
    ann.save()
    forget_resolved()
    with pytest.raises(NotSignedIn):
        caller_for_bearer(inactive)


@pytest.mark.django_db(transaction=True)
def test_over_http_and_grpc_a_token_reads_its_users_meters_and_writes_with_the_write_scope(app, ann, write_server):
    read_token = token_of(ann, app, scope="read")["access_token"]
    write_token = token_of(ann, app, scope="read write")["access_token"]
    readings = "/api/v1/meters/{}/readings/"
    row = b"time,meterusage\n2024-06-01 00:00:00,1.5\n"

    def http(token: str) -> APIClient:
        client = APIClient()
        client.credentials(HTTP_AUTHORIZATION=f"Bearer {token}")
        return client

    refused = http(read_token).post(readings.format("house-7-main"), row, content_type="text/csv")
    assert refused.status_code == 403
    assert refused.json()["detail"] == "oauth:ann may read but not write readings"
    assert http(write_token).post(readings.format("house-7-main"), row, content_type="text/csv").json()["inserted"] == 1
    assert http(read_token).get(readings.format("house-7-main"), {"start": "2024-06-01", "end": "2024-06-02"}).json()["readings"] == [
        {"time": "2024-06-01T00:00:00Z", "value": 1.5},
    ]
    assert http(read_token).get(readings.format("house-9-main"), {"start": "2024-06-01", "end": "2024-06-02"}).status_code == 404
    # The same token as gRPC metadata.
    stub = write_server.stub
    metadata = [("authorization", f"Bearer {read_token}")]
    listed = stub.ListMeters(pb.ListMetersRequest(), metadata=metadata)
    assert sorted(m.name for m in listed.meters) == ["house-7-main", "house-7-solar"] and listed.total_size == 2
    with pytest.raises(grpc.RpcError) as hidden:
        stub.GetMeter(pb.GetMeterRequest(name="house-9-main"), metadata=metadata)
    assert hidden.value.code() == grpc.StatusCode.NOT_FOUND


def test_over_http_a_bearer_text_that_is_no_token_is_refused(app):
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION="Bearer not-a-token")

    refused = client.get("/api/v1/import-runs/")

    assert refused.status_code == 401
    assert refused.json()["detail"] == "the bearer credential is not valid: not an API key or a usable access token"


def test_admin_lists_and_adds_apps_and_tokens(app):
    client = signed_in(get_user_model().objects.create_user("operator", is_staff=True, is_superuser=True))

    for page in ("/admin/", "/admin/oauth2_provider/application/", "/admin/oauth2_provider/application/add/",
                 f"/admin/oauth2_provider/application/{app.pk}/change/", "/admin/oauth2_provider/accesstoken/"):
        assert client.get(page).status_code == 200, page
