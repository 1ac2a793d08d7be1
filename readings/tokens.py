"""Opaque, signed continuation tokens (page and resume tokens), bound to the request they came from.

A token carries the position to continue after and a digest of the request's other fields, signed
with SECRET_KEY: clients cannot forge or alter one, and any server of the deployment reads it.
"""
import hashlib

from django.core import signing

from readings.domain import FieldViolation, InvalidArgument


def _request_digest(request_fields: tuple) -> str:
    return hashlib.blake2s(repr(request_fields).encode(), digest_size=8).hexdigest()


def _signer(kind: str) -> signing.Signer:
    # A plain Signer, not dumps()'s TimestampSigner: the same page gets the same token, so a
    # response that carries one stays byte-identical (and keeps its ETag).
    return signing.Signer(salt=f"meterusage.{kind}")


def issue(kind: str, *, position, request_fields: tuple) -> str:
    """A token of `kind` to continue after `position` for the request with `request_fields`."""
    return _signer(kind).sign_object([position, _request_digest(request_fields)], compress=True)


def redeem(kind: str, token: str, *, field: str, request_fields: tuple):
    """The position stored in `token`; InvalidArgument (on `field`) if it is not one this request may use."""
    try:
        position, digest = _signer(kind).unsign_object(token)
    except (signing.BadSignature, ValueError, TypeError):
        raise InvalidArgument(FieldViolation(field, "is not a token issued by this service")) from None
    if digest != _request_digest(request_fields):
        raise InvalidArgument(
            FieldViolation(field, "was issued for a request with other fields; send it with the same ones")
        )
    return position
