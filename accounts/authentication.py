"""Bearer credentials on the HTTP API: an API key or an OAuth 2 access token in `Authorization:
Bearer` signs the request in as its user; the credential goes on to the service, where its own
limits (scope, meters) hold on top of what that user may do."""
from oauth2_provider.contrib.rest_framework import OAuth2Authentication
from rest_framework import authentication, exceptions, permissions

from accounts.access import ACCESS_CACHE_SECONDS
from accounts.keys import prefix_of, recent_key_for
from accounts.models import ApiKey


class ApiKeyAuthentication(authentication.BaseAuthentication):
    keyword = "Bearer"

    def authenticate(self, request):
        words = authentication.get_authorization_header(request).split()
        if len(words) != 2 or words[0].decode("latin-1") != self.keyword:
            return None  # not ours: another scheme, or none
        text = words[1].decode("latin-1")
        if prefix_of(text) is None:
            return None  # not shaped like a key: an access token, for AccessTokenAuthentication
        key = recent_key_for(text, ACCESS_CACHE_SECONDS)
        if key is None:
            raise exceptions.AuthenticationFailed("the API key is not valid: unknown, revoked or expired")
        # Passed on to the service, which decides what the key reaches (accounts/access.py).
        key.presented = text
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
        if not _bearer_text(request):
            return None  # tokens come only in the header; oauthlib need not read the request
        try:
            signed_in = super().authenticate(request)
        except ValueError:  # oauthlib reads the whole URL: a query string it cannot decode
            raise exceptions.AuthenticationFailed("the request's query string is not valid URL encoding") from None
        if signed_in is not None and not signed_in[0].is_active:
            signed_in = None
        if signed_in is None and _bearer_text(request):
            raise exceptions.AuthenticationFailed(
                "the bearer credential is not valid: not an API key or a usable access token"
            )
        if signed_in is not None:
            # Passed on to the service, which decides what the token reaches (accounts/access.py).
            signed_in[1].presented = _bearer_text(request)
        return signed_in


class KeyLimits(permissions.BasePermission):
    """For the lists the web tier serves from its own database (import runs, rejected messages),
    which span every meter: a key limited to meters does not reach them. (Everything about meters
    and readings is the service's to decide, as the key's caller.)"""

    def has_permission(self, request, view):
        key = request.auth
        if isinstance(key, ApiKey) and key.meters.exists():
            raise exceptions.PermissionDenied(f"the key {key.prefix} is limited to some meters; ask for one of them")
        return True
