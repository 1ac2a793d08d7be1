"""Bearer tokens: the token a call carries, whether it is one of a set, and write permission
(WriteReadings needs one of GRPC_WRITE_TOKENS, whatever the read tokens are)."""
import hmac

import grpc
from django.conf import settings


def bearer_token(metadata) -> str:
    header = dict(metadata or ()).get("authorization", "")
    scheme, _, presented = header.partition(" ")
    return presented.strip() if scheme.lower() == "bearer" else ""


def is_one_of(token: str, tokens: list[str]) -> bool:
    """Whether `token` is one of `tokens`, compared in constant time."""
    return bool(token) and any(hmac.compare_digest(token.encode(), allowed.encode()) for allowed in tokens)


class NotAllowed(Exception):
    """A call its credentials do not allow; `code` is UNAUTHENTICATED or PERMISSION_DENIED."""

    def __init__(self, code: grpc.StatusCode, message: str):
        self.code = code
        super().__init__(message)


def require_write_token(context) -> None:
    """NotAllowed unless the call carries a write token: UNAUTHENTICATED without a token (or with
    one the service does not know), PERMISSION_DENIED with a token that may only read."""
    token = bearer_token(context.invocation_metadata())
    if is_one_of(token, settings.GRPC_WRITE_TOKENS):
        return
    if is_one_of(token, settings.GRPC_AUTH_TOKENS):
        raise NotAllowed(grpc.StatusCode.PERMISSION_DENIED, "this token may read but not write readings")
    if not settings.GRPC_WRITE_TOKENS:
        raise NotAllowed(grpc.StatusCode.UNAUTHENTICATED, "this server takes no writes (GRPC_WRITE_TOKENS is not set)")
    raise NotAllowed(grpc.StatusCode.UNAUTHENTICATED, "writing needs 'authorization: Bearer <write token>'")
