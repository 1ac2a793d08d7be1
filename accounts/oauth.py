"""OAuth 2 access tokens as callers: the third-party apps a user authorised ("Connect My Data").

django-oauth-toolkit issues the tokens (authorization code with PKCE, /o/); this module only says
who a token stands for. A token is found through the toolkit's own validator, which knows how the
tokens are stored (a checksum of the token, the token itself not kept at rest) and whether one
is still usable (expired, revoked, its application disabled).
"""
from oauthlib.common import Request
from oauth2_provider.settings import oauth2_settings

from accounts.access import Caller, caller_of_user

# The scope that lets a token write; every token reads ("write" includes "read").
WRITE_SCOPE = "write"


def access_token_for(text: str):
    """The usable access token whose text `text` is, with its user and application; None for any
    other text (unknown, expired, revoked, issued to no user, its user deactivated)."""
    if not text:
        return None
    request = Request("")
    if not oauth2_settings.OAUTH2_VALIDATOR_CLASS().validate_bearer_token(text, [], request):
        return None
    token = request.access_token
    if token.user is None or not token.user.is_active:
        return None
    return token


def may_write(token) -> bool:
    """Whether an access token was granted the write scope."""
    return WRITE_SCOPE in token.scope.split()


def caller_of_access_token(text: str) -> Caller | None:
    """The caller an OAuth 2 access token stands for; None when it is not a usable token."""
    token = access_token_for(text)
    if token is None:
        return None
    return caller_of_user(token.user, name=f"oauth:{token.user.get_username()}", may_write=may_write(token))
