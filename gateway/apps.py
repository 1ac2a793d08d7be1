from django.apps import AppConfig


class GatewayConfig(AppConfig):
    """The HTTP tier: the JSON API, the dashboard and the device simulator, all clients of the
    gRPC service."""

    name = "gateway"
