import json
import sys

import grpc
from django.conf import settings
from django.core.management.base import BaseCommand, CommandError
from google.protobuf import json_format

from grpc_api.gen.meterusage.v1 import meter_usage_pb2 as pb
from grpc_api.gen.meterusage.v1 import meter_usage_pb2_grpc

METHODS = pb.DESCRIPTOR.services_by_name["MeterUsageService"].methods_by_name


class Command(BaseCommand):
    help = (
        "Call a meterusage.v1 RPC and print the response as JSON (one line per message of a stream). "
        "Example: grpccall ListReadings '{\"meter\": \"meterusage\", \"start_time\": "
        "\"2019-01-01T01:00:00Z\", \"end_time\": \"2019-01-01T02:00:00Z\"}'"
    )
    requires_system_checks = []

    def add_arguments(self, parser):
        parser.add_argument("method", choices=sorted(METHODS), help="RPC to call.")
        parser.add_argument("request", nargs="?", default="{}", help="Request as JSON (field names as in the proto).")
        parser.add_argument("--target", default=settings.GRPC_TARGET, help=f"Server (default {settings.GRPC_TARGET}).")
        parser.add_argument(
            "--token", help="Bearer token (default GRPC_WRITE_TOKEN for WriteReadings, else GRPC_TOKEN)."
        )
        parser.add_argument(
            "--timeout", type=float, default=30.0, help="Deadline in seconds (default 30; a WatchReadings: none)."
        )

    def handle(self, *args, method, request, target, token, timeout, **options):
        descriptor = METHODS[method]
        request_class = getattr(pb, descriptor.input_type.name)
        try:
            message = json_format.Parse(request, request_class())
        except json_format.ParseError as exc:
            raise CommandError(f"bad request for {method}: {exc}") from None
        # Writes go with the write token, other calls with the gateway's, unless one is given.
        token = token or (settings.GRPC_WRITE_TOKEN if method == "WriteReadings" else settings.GRPC_TOKEN)
        metadata = [("authorization", f"Bearer {token}")] if token else None
        if method == "WatchReadings" and not message.catch_up_only:
            timeout = None  # a watch runs until stopped
        with grpc.insecure_channel(target) as channel:
            stub = meter_usage_pb2_grpc.MeterUsageServiceStub(channel)
            try:
                result = getattr(stub, method)(message, timeout=timeout, metadata=metadata)
                responses = result if descriptor.server_streaming else [result]
                for response in responses:
                    self.stdout.write(json.dumps(json_format.MessageToDict(response, preserving_proto_field_name=True)))
            except grpc.RpcError as exc:
                self.stderr.write(f"{exc.code().name}: {exc.details()}")
                sys.exit(1)
