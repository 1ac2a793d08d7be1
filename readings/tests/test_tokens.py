"""Continuation tokens: opaque, stable for the same page, bound to their request."""
import pytest

from readings import tokens
from readings.domain import InvalidArgument

REQUEST = ("meterusage", 1546300800, 1548979200)


def test_the_same_page_gets_the_same_token(monkeypatch):
    first = tokens.issue("readings", position=1546301700, request_fields=REQUEST)
    # Later, as a client re-fetching the page would be: the token (and so an ETag) must not change.
    monkeypatch.setattr("time.time", lambda: 4_000_000_000.0)

    assert tokens.issue("readings", position=1546301700, request_fields=REQUEST) == first
    assert tokens.redeem("readings", first, field="page_token", request_fields=REQUEST) == 1546301700


@pytest.mark.parametrize(
    ("kind", "request_fields", "message"),
    [
        ("stream", REQUEST, "is not a token issued by this service"),
        ("readings", ("other", *REQUEST[1:]), "was issued for a request with other fields"),
    ],
)
def test_a_token_is_refused_elsewhere(kind, request_fields, message):
    token = tokens.issue("readings", position=1546301700, request_fields=REQUEST)

    with pytest.raises(InvalidArgument, match=message):
        tokens.redeem(kind, token, field="page_token", request_fields=request_fields)


def test_a_tampered_token_is_refused():
    token = tokens.issue("readings", position=1546301700, request_fields=REQUEST)

    with pytest.raises(InvalidArgument, match="page_token: is not a token issued by this service"):
        tokens.redeem("readings", token[:-2] + ("aa" if not token.endswith("aa") else "bb"), field="page_token", request_fields=REQUEST)
