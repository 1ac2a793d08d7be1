"""The names test modules imported from here before the fixtures were split by concern; kept so
that test modules written against that layout still import. New code imports from the module that
holds the name: testing.helpers, testing.data, testing.stores, testing.servers, testing.browser.
"""
from testing.browser import ARTIFACTS, CHROMIUM, CHROMIUM_ARGS, expect_ready, screenshot
from testing.data import (
    GENERATED, GENERATED_DAYS, GENERATED_START, REFERENCE_FIRST, REFERENCE_LAST, REFERENCE_NAN_LINE,
    REFERENCE_READINGS, REFERENCE_ROWS, Reference, csv_readings,
)
from testing.helpers import (
    HEADER, JANUARY, REPO, all_reading_pages, free_port, grpc_calls, import_file, require, self_signed_certificate,
    ts, wait_for,
)
from testing.servers import (
    ReconnectingWatcher, start_grpc_server, start_grpc_server_on, start_process, start_web_server, stop_process,
)
from testing.stores import MqttBroker

__all__ = [
    "ARTIFACTS", "CHROMIUM", "CHROMIUM_ARGS", "GENERATED", "GENERATED_DAYS", "GENERATED_START", "HEADER", "JANUARY",
    "REFERENCE_FIRST", "REFERENCE_LAST", "REFERENCE_NAN_LINE", "REFERENCE_READINGS", "REFERENCE_ROWS", "REPO",
    "MqttBroker", "ReconnectingWatcher", "Reference", "all_reading_pages", "csv_readings", "expect_ready",
    "free_port", "grpc_calls", "import_file", "require", "screenshot", "self_signed_certificate",
    "start_grpc_server", "start_grpc_server_on", "start_process", "start_web_server", "stop_process", "ts",
    "wait_for",
]
