"""API keys on the HTTP API: `Authorization: Bearer <key>` signs the request in as the key's user;
the key goes on to the service, where its limits (scope, meters) hold on top of what that user
may do."""
from rest_framework import authentication, exceptions, permissions

from accounts.keys import key_for, prefix_of
from accounts.models import ApiKey


class ApiKeyAuthentication(authentication.BaseAuthentication):
    keyword = "Bearer"

    def authenticate(self, request):
        words = authentication.get_authorization_header(request).split()
        if len(words) != 2 or words[0].decode("latin-1") != self.keyword:
            return None  # not ours: another scheme, or none
        text = words[1].decode("latin-1")
        key = key_for(text) if prefix_of(text) else None
        if key is None:
            raise exceptions.AuthenticationFailed("the API key is not valid: unknown, revoked or expired")
        # Passed on to the service, which decides what the key reaches (accounts/access.py).
        key.presented = text
        return key.user, key

    def authenticate_header(self, request):
        return f'{self.keyword} realm="api"'


class KeyLimits(permissions.BasePermission):
    """For the lists the web tier serves from its own database (import runs, rejected messages),
    which span every meter: a key limited to meters does not reach them. (Everything about meters
    and readings is the service's to decide, as the key's caller.)"""

    def has_permission(self, request, view):
        key = request.auth
        if isinstance(key, ApiKey) and key.meters.exists():
            raise exceptions.PermissionDenied(f"the key {key.prefix} is limited to some meters; ask for one of them")
        return True
