"""Who may read and write which meter: the one rule every path asks.

A caller is who a call comes from, resolved from what it presents: nothing (anonymous), one of the
service's own tokens, an API key, an OAuth 2 access token, or the short-lived credential the web
tier signs for a signed-in user. The rule:

- staff users and the service's own tokens see every meter;
- anyone else sees the meters of the accounts they are members of, and public meters;
- a key (or OAuth token) limited to meters sees only those, of the ones above;
- writing needs a write scope and a meter the caller's account owns (staff: any meter);
- a meter the caller may not see is reported exactly as one that does not exist.

Resolving a credential reads the database (a key's row, a user's accounts); the result is kept for
ACCESS_CACHE_SECONDS, so a revoked key or a removed member stops within that time.
"""
import hashlib
import hmac
import threading
import time
from dataclasses import dataclass

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core import signing
from django.db.models import Q

# How long a resolved credential is kept in this process: a revoked key stops within it.
ACCESS_CACHE_SECONDS = 0.5
# The web tier's credential for a signed-in user: signed with SECRET_KEY, good for this long.
USER_CREDENTIAL_START = "muc."
USER_CREDENTIAL_SECONDS = 60
_SIGNING_SALT = "meterusage.accounts.caller"


WRITE_NEEDS_CREDENTIAL = "writing readings needs a credential: an API key, or a signed-in user"


class NotSignedIn(Exception):
    """A credential that is not valid (unknown, revoked, expired, malformed), or none where one is
    needed: gRPC UNAUTHENTICATED, HTTP 401."""


class NotPermitted(Exception):
    """A caller who may see the meter but not do this to it (a read key writing): gRPC
    PERMISSION_DENIED, HTTP 403."""


@dataclass(frozen=True)
class Caller:
    """Who a call comes from and what they may reach. `name` identifies them in logs and in the
    record of writes: "anonymous", "service", "user:ann", "key:ab12cd34", "oauth:ann"."""

    name: str
    user_id: int | None = None
    # Staff users and the service's own tokens: every meter.
    everything: bool = False
    account_ids: frozenset = frozenset()
    may_write: bool = False
    # A key limited to meters: their primary keys (None: not limited).
    meter_ids: frozenset | None = None

    @property
    def is_anonymous(self) -> bool:
        return self.name == ANONYMOUS.name

    def sees(self, meter) -> bool:
        """Whether the caller may read `meter` (anything with pk, account_id and public)."""
        if self.meter_ids is not None and meter.pk not in self.meter_ids:
            return False
        return self.everything or meter.public or meter.account_id in self.account_ids

    def owns(self, meter) -> bool:
        if self.meter_ids is not None and meter.pk not in self.meter_ids:
            return False
        return self.everything or meter.account_id in self.account_ids

    def check_write(self, meter) -> None:
        """Nothing when the caller may write `meter`; NotPermitted when it may only read it. A
        meter it may not see is the caller's to report as missing (check `sees` first)."""
        if self.is_anonymous:
            raise NotSignedIn(WRITE_NEEDS_CREDENTIAL)
        if not self.may_write:
            raise NotPermitted(f"{self.name} may read but not write readings")
        if not self.owns(meter):
            raise NotPermitted(f"{self.name} may read meter {meter.name!r} but not write it")

    def meters_filter(self) -> Q:
        """The meters the caller sees, as a filter of Meter."""
        seen = Q() if self.everything else Q(public=True) | Q(account_id__in=self.account_ids)
        if self.meter_ids is not None:
            seen &= Q(pk__in=self.meter_ids)
        return seen


ANONYMOUS = Caller("anonymous")
# The service's own tokens and the project's own commands: every meter.
SERVICE = Caller("service", everything=True, may_write=True)
SERVICE_READ_ONLY = Caller("service", everything=True, may_write=False)


def caller_of_user(user, *, name: str | None = None, may_write: bool = True, meter_ids=None) -> Caller:
    """The caller a user is (through a key or token with `may_write` and `meter_ids`, if any)."""
    if user is None or not user.is_authenticated or not user.is_active:
        return ANONYMOUS
    accounts = frozenset(user.accounts.values_list("pk", flat=True))
    return Caller(
        name or f"user:{user.get_username()}", user_id=user.pk, everything=user.is_staff,
        account_ids=accounts, may_write=may_write,
        meter_ids=frozenset(meter_ids) if meter_ids is not None else None,
    )


def caller_of_key(key) -> Caller:
    limits = list(key.meters.values_list("pk", flat=True))
    return caller_of_user(
        key.user, name=f"key:{key.prefix}", may_write=key.scope == key.Scope.WRITE,
        meter_ids=limits or None,
    )


def user_credential(user) -> str:
    """The credential the web tier sends the service for its caller, a signed-in user or an
    anonymous visitor: who, signed with SECRET_KEY, good for USER_CREDENTIAL_SECONDS. The service's
    rate limits leave these calls to the web tier's own."""
    pk = user.pk if user is not None and user.is_authenticated else 0
    return USER_CREDENTIAL_START + signing.dumps(pk, salt=_SIGNING_SALT, compress=False)


def is_user_credential(text: str) -> bool:
    """Whether `text` is a credential the web tier signed (and not yet expired)."""
    try:
        _signed_user(text)
    except NotSignedIn:
        return False
    return True


def _signed_user(text: str) -> int:
    if not text.startswith(USER_CREDENTIAL_START):
        raise NotSignedIn("the credential is not valid")
    try:
        return signing.loads(text[len(USER_CREDENTIAL_START):], salt=_SIGNING_SALT, max_age=USER_CREDENTIAL_SECONDS)
    except signing.SignatureExpired:
        raise NotSignedIn("the signed-in user's credential has expired") from None
    except signing.BadSignature:
        raise NotSignedIn("the credential is not valid") from None


def _user_of_credential(text: str) -> Caller:
    pk = _signed_user(text)
    if not pk:
        return ANONYMOUS
    caller = caller_of_user(get_user_model().objects.filter(pk=pk).first())
    if caller is ANONYMOUS:
        raise NotSignedIn("the credential's user is no longer active")
    return caller


def is_one_of(token: str, tokens: list[str]) -> bool:
    """Whether `token` is one of `tokens`, compared in constant time."""
    return bool(token) and any(hmac.compare_digest(token.encode(), allowed.encode()) for allowed in tokens)


def _resolve(text: str) -> Caller:
    from accounts.keys import key_for, prefix_of

    if is_one_of(text, settings.GRPC_WRITE_TOKENS):
        return SERVICE
    if is_one_of(text, settings.GRPC_AUTH_TOKENS):
        return SERVICE_READ_ONLY
    if text.startswith(USER_CREDENTIAL_START):
        return _user_of_credential(text)
    if prefix_of(text):
        key = key_for(text)
        if key is None:
            raise NotSignedIn("the API key is not valid: unknown, revoked or expired")
        return caller_of_key(key)
    from accounts.oauth import caller_of_access_token

    caller = caller_of_access_token(text)
    if caller is None:
        raise NotSignedIn("the bearer credential is not valid: not an API key, an access token or a service token")
    return caller


_resolved: dict[str, tuple[float, Caller]] = {}
_resolved_lock = threading.Lock()


def caller_for_bearer(text: str) -> Caller:
    """The caller a bearer credential stands for (ANONYMOUS for none); NotSignedIn for one that
    is not valid. Kept for ACCESS_CACHE_SECONDS."""
    if not text:
        return ANONYMOUS
    digest = hashlib.sha256(text.encode()).digest()
    now = time.monotonic()
    kept = _resolved.get(digest)
    if kept is not None and kept[0] > now:
        return kept[1]
    caller = _resolve(text)
    with _resolved_lock:
        if len(_resolved) > 10_000:
            _resolved.clear()
        _resolved[digest] = (now + ACCESS_CACHE_SECONDS, caller)
    return caller


def forget_resolved() -> None:
    """Drop every kept resolution (tests that change rights between calls)."""
    from accounts.keys import forget_recent_keys

    with _resolved_lock:
        _resolved.clear()
    forget_recent_keys()
