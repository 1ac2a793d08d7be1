"""Bearer credentials on the HTTP API: an API key or an OAuth 2 access token in `Authorization:
Bearer` signs the request in as its user, and the credential's own limits (scope, meters) hold on
top of what that user may do."""
from oauth2_provider.contrib.rest_framework import OAuth2Authentication
from oauth2_provider.models import AbstractAccessToken
from rest_framework import authentication, exceptions, permissions

from accounts.keys import key_for, prefix_of
from accounts.models import ApiKey
from accounts.oauth import may_write


class ApiKeyAuthentication(authentication.BaseAuthentication):
    keyword = "Bearer"

    def authenticate(self, request):
        words = authentication.get_authorization_header(request).split()
        if len(words) != 2 or words[0].decode("latin-1") != self.keyword:
            return None  # not ours: another scheme, or none
        text = words[1].decode("latin-1")
        if prefix_of(text) is None:
            return None  # not shaped like a key: an access token, for AccessTokenAuthentication
        key = key_for(text)
        if key is None:
            raise exceptions.AuthenticationFailed("the API key is not valid: unknown, revoked or expired")
        return key.user, key

    def authenticate_header(self, request):
        return f'{self.keyword} realm="api"'


def _bearer_text(request) -> str:
    """The text after `Bearer` in the Authorization header (any case, as oauthlib reads it), or ""."""
    words = authentication.get_authorization_header(request).split()
    return words[1].decode("latin-1") if len(words) == 2 and words[0].lower() == b"bearer" else ""


class AccessTokenAuthentication(OAuth2Authentication):
    """OAuth 2 access tokens (django-oauth-toolkit), after API keys. A bearer text that is neither
    a key nor a usable token is refused (401), not taken as an anonymous request."""

    def authenticate(self, request):
        signed_in = super().authenticate(request)
        if signed_in is not None and not signed_in[0].is_active:
            signed_in = None
        if signed_in is None and _bearer_text(request):
            raise exceptions.AuthenticationFailed(
                "the bearer credential is not valid: not an API key or a usable access token"
            )
        return signed_in


class KeyLimits(permissions.BasePermission):
    """What a key or an access token allows beyond its user's rights: a read key or token only
    reads; a key limited to meters reaches only those meters' endpoints, and any other meter is as
    missing as one that is not."""

    def has_permission(self, request, view):
        key = request.auth
        if isinstance(key, AbstractAccessToken):
            if request.method not in permissions.SAFE_METHODS and not may_write(key):
                raise exceptions.PermissionDenied("the access token may only read (scope read, not write)")
            return True
        if not isinstance(key, ApiKey):
            return True
        if request.method not in permissions.SAFE_METHODS and key.scope != ApiKey.Scope.WRITE:
            raise exceptions.PermissionDenied(f"the key {key.prefix} may only read")
        limits = set(key.meters.values_list("name", flat=True))
        if not limits:
            return True
        meter = view.kwargs.get("meter")
        if meter is None:
            raise exceptions.PermissionDenied(f"the key {key.prefix} is limited to some meters; ask for one of them")
        if meter not in limits:
            raise exceptions.NotFound()
        return True
