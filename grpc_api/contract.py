"""Facts of the meterusage.v1 contract that the server and its clients share."""
from grpc_api.gen.meterusage.v1 import meter_usage_pb2

SERVICE = meter_usage_pb2.DESCRIPTOR.services_by_name["MeterUsageService"]
SERVICE_NAME = SERVICE.full_name
# Messages of up to 16 MiB: a full page of readings or a year of 15-minute buckets fits easily.
MAX_MESSAGE_BYTES = 16 * 1024 * 1024
# google.rpc.ErrorInfo of an UNAVAILABLE that comes from a store behind the service (its
# metadata "store" names it), as opposed to the service itself being unreachable.
ERROR_DOMAIN = "meterusage.v1"
STORE_UNAVAILABLE = "STORE_UNAVAILABLE"
# ErrorInfo of an INVALID_ARGUMENT whose field violations were cut: metadata "violation_count"
# holds how many there were in all.
VIOLATIONS_CUT = "VIOLATIONS_CUT"
