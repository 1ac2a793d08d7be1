"""System checks of the gRPC service: every RPC of the contract has a servicer method (or an
async handler)."""
from django.core.checks import Error, register

from grpc_api.contract import SERVICE


@register()
def check_every_rpc_is_served(app_configs, **kwargs):
    from grpc_api.handlers import ASYNC_METHODS
    from grpc_api.servicers import MeterUsageService

    return [
        Error(
            f"{SERVICE.full_name}.{method} has no method on {MeterUsageService.__name__}: "
            "clients would get UNIMPLEMENTED",
            hint="Implement it in grpc_api/servicers.py, or run `manage.py compileprotos` if the proto changed.",
            obj=MeterUsageService,
            id="grpc_api.E001",
        )
        for method in SERVICE.methods_by_name
        if not callable(getattr(MeterUsageService, method, None)) and method not in ASYNC_METHODS
    ]
