"""API keys: made once and shown once, kept as a digest, found by their prefix.

A key is `mu_<prefix>_<secret>`: 8 characters that name it (in lists, logs and the change log) and
32 random bytes. The keys are random, not passwords, so one SHA-256 is as safe a digest as a slow
password hash and costs a call microseconds instead of a hundred milliseconds (django-rest-knox
keeps its tokens the same way).
"""
import hashlib
import hmac
import secrets
import string
import time
from datetime import timedelta

from django.db import IntegrityError, transaction
from django.utils import timezone

from accounts.models import ApiKey

KEY_START = "mu_"
PREFIX_LENGTH = 8
_PREFIX_ALPHABET = string.ascii_lowercase + string.digits
# last_used_at is written at most this often per key: a key in use does not write on every call.
LAST_USED_EVERY = timedelta(minutes=1)


def digest_of(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def create_key(*, user, scope: str = ApiKey.Scope.READ, meters=(), expires_in: timedelta | None = None) -> tuple[ApiKey, str]:
    """A new key of `user` and its text, the only time the text exists outside the caller."""
    for _ in range(5):
        prefix = "".join(secrets.choice(_PREFIX_ALPHABET) for _ in range(PREFIX_LENGTH))
        text = f"{KEY_START}{prefix}_{secrets.token_urlsafe(32)}"
        try:
            with transaction.atomic():
                key = ApiKey.objects.create(
                    user=user, prefix=prefix, digest=digest_of(text), scope=scope,
                    expires_at=timezone.now() + expires_in if expires_in is not None else None,
                )
                key.meters.set(meters)
            return key, text
        except IntegrityError:  # the prefix is taken: draw another
            continue
    raise RuntimeError("could not draw an unused key prefix")


def revoke_key(prefix: str) -> ApiKey:
    """Revoke the key named `prefix` (ApiKey.DoesNotExist if none is); revoking twice keeps the first time."""
    key = ApiKey.objects.get(prefix=prefix)
    if key.revoked_at is None:
        key.revoked_at = timezone.now()
        key.save(update_fields=["revoked_at"])
    return key


def prefix_of(text: str) -> str | None:
    """The prefix of a text shaped like a key, else None."""
    if not text.startswith(KEY_START):
        return None
    prefix, _, secret = text[len(KEY_START):].partition("_")
    return prefix if len(prefix) == PREFIX_LENGTH and secret else None


def key_for(text: str) -> ApiKey | None:
    """The usable key whose text `text` is; None for anything else (malformed, unknown, another
    secret, revoked, expired). Read from the database each time: a revoked key stops at once."""
    prefix = prefix_of(text)
    if prefix is None:
        return None
    key = ApiKey.objects.select_related("user").filter(prefix=prefix).first()
    if key is None or not hmac.compare_digest(key.digest, digest_of(text)):
        return None
    now = timezone.now()
    if not key.is_usable(now) or not key.user.is_active:
        return None
    if key.last_used_at is None or now - key.last_used_at >= LAST_USED_EVERY:
        ApiKey.objects.filter(pk=key.pk).update(last_used_at=now)
        key.last_used_at = now
    return key


_recent: dict[str, tuple[float, ApiKey | None]] = {}


def recent_key_for(text: str, keep_seconds: float) -> ApiKey | None:
    """key_for(text), kept `keep_seconds` in this process: a web server that answers a key's every
    request reads its row once in that time (a revoked key stops within it)."""
    digest = digest_of(text)
    now = time.monotonic()
    kept = _recent.get(digest)
    if kept is not None and kept[0] > now:
        return kept[1]
    key = key_for(text)
    if len(_recent) > 10_000:
        _recent.clear()
    _recent[digest] = (now + keep_seconds, key)
    return key


def forget_recent_keys() -> None:
    _recent.clear()
