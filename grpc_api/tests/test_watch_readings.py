"""WatchReadings against a real gRPC server: changes as writers commit them, resumed exactly once,
corrections included, heartbeats, and watches that hold no worker thread."""
import queue
import threading
import time
from datetime import UTC, datetime

import grpc
import pytest
from django.utils import timezone

from grpc_api.gen.meterusage.v1 import meter_usage_pb2 as pb
from readings.models import ReadingChange
from readings.writes.changes import prune_changes
from testing.helpers import import_file, ts, write_readings

# Transactional: the server's threads write and read with their own connections.
pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.store]


@pytest.fixture
def stub(write_server, settings):
    settings.WATCH_HEARTBEAT_SECONDS = 0.5
    return write_server.stub


@pytest.fixture
def meters(new_meter):
    return lambda count=1: [new_meter() for _ in range(count)]


class Watcher:
    """A watch read on a thread: messages land in a queue."""

    def __init__(self, stub, **request):
        self.messages: queue.Queue = queue.Queue()
        self.call = stub.WatchReadings(pb.WatchReadingsRequest(**request))
        self.error = None
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _read(self):
        try:
            for message in self.call:
                self.messages.put(message)
        except grpc.RpcError as error:
            self.error = error
        self.messages.put(None)

    def changes(self, count: int, timeout: float = 10.0) -> tuple[list[tuple], str]:
        """The next `count` changes as (meter, time, value, replaced), and the last token."""
        found, token = [], ""
        while len(found) < count:
            message = self.messages.get(timeout=timeout)
            assert message is not None, f"stream ended: {self.error}"
            token = message.resume_token
            found += [(c.meter, c.time.ToJsonString(), c.value, c.replaced) for c in message.changes]
        return found, token

    def first(self, timeout: float = 10.0):
        return self.messages.get(timeout=timeout)

    def cancel(self):
        self.call.cancel()
        self.thread.join(5)


def test_a_watch_receives_writes_as_they_commit(stub, meters):
    (name,) = meters()
    watcher = Watcher(stub, meters=[name])
    assert watcher.first().caught_up

    before = time.time()
    write_readings(stub, name, ("2019-01-01 00:15:00", 1.0), ("2019-01-01 00:30:00", 2.0))
    after = time.time()
    stamped = watcher.messages.get(timeout=10)
    assert all(before <= c.commit_time.ToNanoseconds() / 1e9 <= after for c in stamped.changes)
    watcher.messages.queue.appendleft(stamped)
    write_readings(stub, name, ("2019-01-01 00:30:00", 2.5))

    found, _ = watcher.changes(3)
    assert sorted(found[:2]) == [
        (name, "2019-01-01T00:15:00Z", 1.0, False), (name, "2019-01-01T00:30:00Z", 2.0, False),
    ]
    assert found[2] == (name, "2019-01-01T00:30:00Z", 2.5, True)
    watcher.cancel()


def test_a_resumed_watch_gets_what_it_missed_exactly_once(stub, meters, write_csv):
    a, b = meters(2)
    watcher = Watcher(stub, meters=[a, b])
    watcher.first()
    write_readings(stub, a, ("2019-01-01 00:15:00", 1.0))
    _, token = watcher.changes(1)
    watcher.cancel()

    write_readings(stub, a, ("2019-01-01 00:15:00", 1.5), ("2019-01-01 00:30:00", 2.0))
    write_readings(stub, b, ("2019-01-01 00:15:00", 7.0))
    import_file(write_csv("time,meterusage\n2019-01-01 00:30:00,8\n2019-01-01 00:15:00,7\n"), meter=b)
    resumed = Watcher(stub, meters=[a, b], resume_token=token)

    found, _ = resumed.changes(4)
    assert sorted(found) == sorted([
        (a, "2019-01-01T00:15:00Z", 1.5, True), (a, "2019-01-01T00:30:00Z", 2.0, False),
        (b, "2019-01-01T00:15:00Z", 7.0, False), (b, "2019-01-01T00:30:00Z", 8.0, False),
    ])
    write_readings(stub, b, ("2019-01-01 00:45:00", 9.0))
    assert resumed.changes(1)[0] == [(b, "2019-01-01T00:45:00Z", 9.0, False)]
    resumed.cancel()


def test_catch_up_only_ends_and_start_time(stub, meters):
    (name,) = meters()
    write_readings(stub, name, ("2019-01-01 00:15:00", 1.0))
    middle = timezone.now()
    write_readings(stub, name, ("2019-01-01 00:30:00", 2.0))

    since = pb.WatchReadingsRequest(meters=[name], catch_up_only=True)
    since.start_time.FromDatetime(middle)
    messages = list(stub.WatchReadings(since))
    everything = list(stub.WatchReadings(pb.WatchReadingsRequest(meters=[name], catch_up_only=True, start_time=ts("2000-01-01T00:00:00Z"))))
    from_now = list(stub.WatchReadings(pb.WatchReadingsRequest(meters=[name], catch_up_only=True)))

    assert [c.value for m in messages for c in m.changes] == [2.0]
    assert [c.value for m in everything for c in m.changes] == [1.0, 2.0]
    assert [c.value for m in from_now for c in m.changes] == []
    assert messages[-1].caught_up and from_now[-1].caught_up
    again = list(stub.WatchReadings(pb.WatchReadingsRequest(meters=[name], catch_up_only=True, resume_token=messages[-1].resume_token)))
    assert [c.value for m in again for c in m.changes] == []


def test_idle_watches_get_heartbeats(stub, meters):
    (name,) = meters()
    watcher = Watcher(stub, meters=[name])
    first, second = watcher.first(), watcher.first(timeout=5)

    assert second is not None and not second.changes and second.resume_token == first.resume_token
    watcher.cancel()


def test_bad_watches(stub, meters):
    (name,) = meters()
    cases = {
        grpc.StatusCode.NOT_FOUND: pb.WatchReadingsRequest(meters=["nobody"]),
        grpc.StatusCode.INVALID_ARGUMENT: pb.WatchReadingsRequest(meters=[]),
    }
    for code, request in cases.items():
        with pytest.raises(grpc.RpcError) as error:
            list(stub.WatchReadings(request))
        assert error.value.code() == code
    with pytest.raises(grpc.RpcError) as forged:
        list(stub.WatchReadings(pb.WatchReadingsRequest(meters=[name], resume_token="forged")))
    assert forged.value.code() == grpc.StatusCode.INVALID_ARGUMENT


def test_a_token_older_than_the_log_is_out_of_range(stub, meters):
    (name,) = meters()
    (token,) = [m.resume_token for m in stub.WatchReadings(pb.WatchReadingsRequest(meters=[name], catch_up_only=True))]
    write_readings(stub, name, ("2019-01-01 00:15:00", 1.0))
    ReadingChange.objects.update(committed_at=datetime(2020, 1, 1, tzinfo=UTC))

    assert prune_changes() >= 1
    with pytest.raises(grpc.RpcError) as error:
        list(stub.WatchReadings(pb.WatchReadingsRequest(meters=[name], resume_token=token)))
    assert error.value.code() == grpc.StatusCode.OUT_OF_RANGE


def test_open_watches_leave_the_workers_to_other_calls(stub, meters):
    """The server has 4 worker threads; 60 open watches must not take them."""
    (name,) = meters()
    watchers = [Watcher(stub, meters=[name]) for _ in range(60)]
    for watcher in watchers:
        assert watcher.first().caught_up

    for _ in range(5):
        answer = stub.GetMeter(pb.GetMeterRequest(name=name), timeout=5)
        assert answer.name == name
    write_readings(stub, name, ("2019-01-01 00:15:00", 4.0))
    assert all(w.changes(1)[0] == [(name, "2019-01-01T00:15:00Z", 4.0, False)] for w in watchers)
    for watcher in watchers:
        watcher.cancel()


def test_a_busy_meter_does_not_hide_changes_from_a_quiet_one(stub, meters, write_csv):
    """Positions are kept per meter: a page of a busy meter's old changes must not stand in for
    the quiet meter's new ones (pages hold 5,000 changes)."""
    quiet, busy = meters(2)
    write_readings(stub, quiet, ("2019-01-01 00:15:00", 1.0))
    rows = "".join(f"2019-02-01 00:00:00,{0}\n".replace("00:00:00", f"{h:02d}:{m:02d}:00").format(h * 60 + m)
                   for h in range(24) for m in range(60))
    for day in range(5):  # 7,200 changes of the busy meter
        import_file(write_csv("time,meterusage\n" + rows.replace("2019-02-01", f"2019-02-0{day + 1}")), meter=busy)
    watcher = Watcher(stub, meters=[quiet, busy])
    assert watcher.first().caught_up

    write_readings(stub, quiet, ("2019-01-01 00:30:00", 2.0))

    assert watcher.changes(1)[0] == [(quiet, "2019-01-01T00:30:00Z", 2.0, False)]
    watcher.cancel()
