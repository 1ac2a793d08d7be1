"""WatchReadings served from a Citus coordinator (the three-node cluster of testing/citus.py): a live
write through the project's gRPC server reaches a watch, woken by the coordinator's NOTIFY, exactly
once; a correction too; a watch resumed from the last token gets nothing again."""

import pytest

from grpc_api.gen.meterusage.v1 import meter_usage_pb2 as pb
from grpc_api.tests.test_watch_readings import Watcher
from readings.models import Meter, ReadingChange
from testing.helpers import WRITE_TOKEN, write_readings


@pytest.fixture
def stub(citus_database, make_grpc_server, settings):
    settings.GRPC_WRITE_TOKENS = [WRITE_TOKEN]
    settings.READINGS_SOURCES = {"default": {"BACKEND": "readings.sources.sql.SqlSource"}}
    settings.WATCH_HEARTBEAT_SECONDS = 30  # no heartbeat within the test: every message is a change
    settings.WATCH_POLL_SECONDS = 3600  # no look of the hub's own: only NOTIFY can wake it
    return make_grpc_server(max_workers=4).stub


def test_a_live_write_reaches_a_watch_through_the_coordinator_exactly_once(stub):
    Meter.objects.create(name="citus-watched", public=True)
    watcher = Watcher(stub, meters=["citus-watched"])
    assert watcher.first().caught_up

    assert write_readings(stub, "citus-watched", ("2019-01-01 00:15:00", 1.0), ("2019-01-01 00:30:00", 2.0)).inserted_count == 2
    found, _ = watcher.changes(2, timeout=10)  # woken by NOTIFY through the coordinator
    assert found == [
        ("citus-watched", "2019-01-01T00:15:00Z", 1.0, False), ("citus-watched", "2019-01-01T00:30:00Z", 2.0, False),
    ]
    write_readings(stub, "citus-watched", ("2019-01-01 00:30:00", 2.5))
    found, token = watcher.changes(1, timeout=10)
    assert found == [("citus-watched", "2019-01-01T00:30:00Z", 2.5, True)]

    # A change sent twice would come before the next write's.
    write_readings(stub, "citus-watched", ("2019-01-01 00:45:00", 3.0))
    found, token = watcher.changes(1, timeout=10)
    assert found == [("citus-watched", "2019-01-01T00:45:00Z", 3.0, False)]
    assert watcher.messages.empty()
    watcher.cancel()
    again = list(stub.WatchReadings(pb.WatchReadingsRequest(meters=["citus-watched"], resume_token=token, catch_up_only=True)))
    assert [change for message in again for change in message.changes] == []
    assert ReadingChange.objects.filter(meter__name="citus-watched").count() == 4
