from django.apps import AppConfig


class GrpcApiConfig(AppConfig):
    name = "grpc_api"
    verbose_name = "gRPC API"

    def ready(self):
        from grpc_api import checks  # noqa: F401  (registers the system checks)
