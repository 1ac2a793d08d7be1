"""The API's calls to the service are made as the request's caller: the service decides what they
see (accounts/access.py), so the web tier need not and does not."""
from accounts.access import Caller, NotSignedIn, caller_for_bearer, user_credential
from gateway import client


def credential_of(request) -> str:
    """The credential the service is sent for `request`: the API key or access token the client
    presented, else the signed credential of its user (a session, or anonymous)."""
    presented = getattr(request.auth, "presented", None)
    if isinstance(presented, str) and presented:
        return presented
    return user_credential(request.user)


def caller_of(request) -> Caller | None:
    """The caller `request` stands for, as the service resolves it; None when the credential is
    not valid (the service answers why)."""
    try:
        return caller_for_bearer(credential_of(request))
    except NotSignedIn:
        return None


class CallsAsCaller:
    """A view mixin: every call the view makes to the service carries its request's caller, and
    no call outlives the request with it (a thread serves many requests)."""

    def dispatch(self, request, *args, **kwargs):
        reset = client.caller_credential.set(None)
        try:
            return super().dispatch(request, *args, **kwargs)
        finally:
            client.caller_credential.reset(reset)

    def initial(self, request, *args, **kwargs):
        super().initial(request, *args, **kwargs)
        client.caller_credential.set(credential_of(request))
