"""How the OpenAPI schema (drf-spectacular) describes API keys (HTTP bearer authentication) and
OAuth 2 access tokens."""
from drf_spectacular.contrib.django_oauth_toolkit import DjangoOAuthToolkitScheme
from drf_spectacular.extensions import OpenApiAuthenticationExtension


class ApiKeyScheme(OpenApiAuthenticationExtension):
    target_class = "accounts.authentication.ApiKeyAuthentication"
    name = "apiKey"

    def get_security_definition(self, auto_schema):
        return {
            "type": "http", "scheme": "bearer",
            "description": "An API key (`manage.py apikey create`): `Authorization: Bearer mu_...`.",
        }


class AccessTokenScheme(DjangoOAuthToolkitScheme):
    """OAuth 2 access tokens of third-party apps: django-oauth-toolkit's own description (the
    authorization code flow of SPECTACULAR_SETTINGS, the scopes of OAUTH2_PROVIDER)."""

    target_class = "accounts.authentication.AccessTokenAuthentication"
