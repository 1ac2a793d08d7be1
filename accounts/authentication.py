"""API keys on the HTTP API: `Authorization: Bearer <key>` signs the request in as the key's user,
and the key's own limits (scope, meters) hold on top of what that user may do."""
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
        return key.user, key

    def authenticate_header(self, request):
        return f'{self.keyword} realm="api"'


class KeyLimits(permissions.BasePermission):
    """What a key allows beyond its user's rights: a read key only reads; a key limited to meters
    reaches only those meters' endpoints, and any other meter is as missing as one that is not."""

    def has_permission(self, request, view):
        key = request.auth
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
