"""How the OpenAPI schema (drf-spectacular) describes API keys: HTTP bearer authentication."""
from drf_spectacular.extensions import OpenApiAuthenticationExtension


class ApiKeyScheme(OpenApiAuthenticationExtension):
    target_class = "accounts.authentication.ApiKeyAuthentication"
    name = "apiKey"

    def get_security_definition(self, auto_schema):
        return {
            "type": "http", "scheme": "bearer",
            "description": "An API key (`manage.py apikey create`): `Authorization: Bearer mu_...`.",
        }
