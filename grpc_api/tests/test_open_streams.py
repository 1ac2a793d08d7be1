"""Open streams take no worker thread: unary calls are answered while many streams wait."""
import grpc
import pytest

from grpc_api.gen.meterusage.v1 import meter_usage_pb2 as pb
from grpc_api.gen.meterusage.v1 import meter_usage_pb2_grpc
from grpc_api.server import QUEUE_PER_WORKER
from testing.helpers import JANUARY, ts, wait_for

pytestmark = pytest.mark.django_db

WORKERS = 2
# More streams than calls the pool admits (running and queued), so none could have a thread each.
STREAMS = 50
assert STREAMS > WORKERS * (1 + QUEUE_PER_WORKER)


@pytest.fixture
def server(served_data, make_grpc_server):
    return make_grpc_server(max_workers=WORKERS)


def unary_calls_answer(channel) -> None:
    stub = meter_usage_pb2_grpc.MeterUsageServiceStub(channel)
    assert stub.GetMeter(pb.GetMeterRequest(name="meterusage"), timeout=5).name == "meterusage"
    response = stub.ListReadings(pb.ListReadingsRequest(meter="meterusage", page_size=10_000, **JANUARY), timeout=5)
    assert len(response.readings) == 2974


def test_async_streams_on_the_loop_leave_the_workers_to_unary_calls(server):
    # Watches from now: each catches up at once (nothing has changed since), then stays open on
    # the event loop waiting for changes until cancelled.
    watch = pb.WatchReadingsRequest(meters=["meterusage"])
    streams = [server.stub.WatchReadings(watch, timeout=30) for _ in range(STREAMS)]
    firsts = [next(stream) for stream in streams]
    assert [(m.caught_up, len(m.changes)) for m in firsts] == [(True, 0)] * STREAMS
    assert server.calls.in_flight == STREAMS

    unary_calls_answer(server.channel)

    assert server.calls.in_flight == STREAMS
    for stream in streams:
        stream.cancel()
    # Cancelled on the loop, each watch is logged and leaves the count a graceful stop waits on.
    wait_for(lambda: server.calls.in_flight == 0)


def test_sync_streams_hold_no_thread_while_their_clients_pause(server):
    request = pb.StreamReadingsRequest(
        meter="gen-a", batch_size=100, start_time=ts("2019-09-01T00:00:00Z"), end_time=ts("2020-01-01T00:00:00Z")
    )
    # Without BDP probing a stream's flow-control window stays at 64 KiB: each stream (115 messages,
    # 170 KiB) stops half way until its client reads on.
    with grpc.insecure_channel(server.target, options=[("grpc.http2.bdp_probe", 0)]) as channel:
        stub = meter_usage_pb2_grpc.MeterUsageServiceStub(channel)
        expected = sum(len(m.times) for m in stub.StreamReadings(request, timeout=30))
        streams, firsts = [], []
        # One after another, as clients arrive: a stream counts toward admission until its first message.
        for _ in range(STREAMS):
            streams.append(stub.StreamReadings(request, timeout=60))
            firsts.append(next(streams[-1]))
        # Each stream has far more to send than HTTP/2 lets through unread: all are still open.
        assert server.calls.in_flight == STREAMS

        unary_calls_answer(channel)

        # A paused stream goes on where it stopped, message for message.
        rest = list(streams[0])
        assert len(firsts[0].times) + sum(len(m.times) for m in rest) == expected
        for stream in streams[1:]:
            stream.cancel()
        wait_for(lambda: server.calls.in_flight == 0)
