"""Requests per API key or OAuth token on the HTTP API (API_RATE_KEY), counted in Django's cache
as DRF's own throttles are: a key is limited wherever it is used, whichever user it belongs to."""
from rest_framework.throttling import SimpleRateThrottle


class KeyRateThrottle(SimpleRateThrottle):
    scope = "key"

    def get_cache_key(self, request, view):
        credential = request.auth
        prefix = getattr(credential, "prefix", None)  # an API key
        if prefix is None and getattr(credential, "presented", None):  # an OAuth access token
            prefix = f"oauth-{credential.pk}"
        if prefix is None:
            return None  # no key: the address's or the user's throttle counts the request
        return self.cache_format % {"scope": self.scope, "ident": prefix}
