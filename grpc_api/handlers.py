"""ROOT_HANDLERS_HOOK of django-grpc-framework: the services this project serves."""
from grpc_api.gen.meterusage.v1 import meter_usage_pb2_grpc
from grpc_api.servicers import MeterUsageService


def grpc_handlers(server):
    meter_usage_pb2_grpc.add_MeterUsageServiceServicer_to_server(MeterUsageService.as_servicer(), server)
