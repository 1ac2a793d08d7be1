"""Who a call comes from: the caller its `authorization: Bearer` metadata stands for
(accounts/access.py decides what each caller may read and write)."""
from accounts.access import Caller, NotSignedIn, caller_for_bearer


def bearer_token(metadata) -> str:
    """The credential of `authorization: Bearer <credential>`; "" for none (or another scheme)."""
    header = dict(metadata or ()).get("authorization", "")
    scheme, _, presented = header.partition(" ")
    return presented.strip() if scheme.lower() == "bearer" else ""


def credential_of(metadata) -> str:
    """The bearer credential of a call's metadata, "" for none; NotSignedIn for an `authorization`
    that is not `Bearer <credential>` (a credential sent wrong is not taken for no credential)."""
    header = dict(metadata or ()).get("authorization")
    if header is None:
        return ""
    presented = bearer_token(metadata)
    if not presented:
        raise NotSignedIn("the authorization metadata must be 'Bearer <credential>'")
    return presented


def caller_of(context) -> Caller:
    """The caller of a call; NotSignedIn for a credential that is not valid."""
    return caller_for_bearer(credential_of(context.invocation_metadata()))
