"""Many WatchReadings opened at once, against a real gRPC server: the watches that arrive while
the database is busy start together in the next database job (not one job each, queued behind one
another), and every change still reaches every watch exactly once, whether it began from now or
from a resume token."""
import asyncio
import threading
import time

import grpc
import pytest
from prometheus_client import REGISTRY

from grpc_api.gen.meterusage.v1 import meter_usage_pb2 as pb
from grpc_api.gen.meterusage.v1 import meter_usage_pb2_grpc
from grpc_api.watch import _hubs
from testing.helpers import READER, write_readings

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.store]

BURST = 200


def started() -> tuple[float, float]:
    """Watch starts so far, and the database jobs they took."""
    name = "meterusage_watch_start_batch_size"
    return REGISTRY.get_sample_value(f"{name}_sum") or 0, REGISTRY.get_sample_value(f"{name}_count") or 0


def token_now(stub, meter: str) -> str:
    messages = list(stub.WatchReadings(pb.WatchReadingsRequest(meters=[meter], catch_up_only=True)))
    return messages[-1].resume_token


def changes_of(message) -> list[tuple]:
    return [(c.meter, c.time.seconds, c.value) for c in message.changes]


async def burst(target: str, requests: list[pb.WatchReadingsRequest], write) -> list[list[tuple]]:
    """Opens every watch at once; reads each one until it has caught up, then calls `write()`
    and reads each one's next message with changes. Returns, per watch, the changes it was sent
    before it caught up and then the next ones."""
    async with grpc.aio.insecure_channel(target) as channel:
        stub = meter_usage_pb2_grpc.MeterUsageServiceStub(channel)
        calls = [stub.WatchReadings(request, metadata=READER) for request in requests]

        async def caught_up(call):
            found = []
            while True:
                message = await asyncio.wait_for(call.read(), 30)
                found += changes_of(message)
                if message.caught_up:
                    return found

        async def next_changes(call):
            while True:
                message = await asyncio.wait_for(call.read(), 30)
                if message.changes:
                    return changes_of(message)

        before = await asyncio.gather(*(caught_up(call) for call in calls))
        await asyncio.get_running_loop().run_in_executor(None, write)
        after = await asyncio.gather(*(next_changes(call) for call in calls))
        for call in calls:
            call.cancel()
        return [list(pair) for pair in zip(before, after)]


def test_a_burst_of_watches_starts_together_and_each_gets_every_change_once(write_server, new_meter):
    stub = write_server.stub
    meters = [new_meter() for _ in range(3)]
    for meter in meters:
        write_readings(stub, meter, (1_700_000_000, 1.0))
    tokens = {meter: token_now(stub, meter) for meter in meters}
    # Another watch of the first meter is open: the server already hands its changes out, so
    # watches from the tokens begin behind it, and watches from now begin past what it handed out.
    holder = stub.WatchReadings(pb.WatchReadingsRequest(meters=[meters[0]]))
    assert next(holder).caught_up
    behind = {meter: [(meter, 1_700_000_900 + i * 900, float(i)) for i in range(5)] for meter in meters}
    for meter, rows in behind.items():
        write_readings(stub, meter, *((seconds, value) for _, seconds, value in rows))
    assert changes_of(next(holder)) == behind[meters[0]]

    # The hub's database threads are kept busy until every watch of the burst has arrived, as a
    # slow database would keep them: the burst must then start in one or two jobs.
    hub = _hubs[write_server.running.loop]
    busy = threading.Event()
    for _ in range(hub.executor._max_workers):
        hub.executor.submit(busy.wait, 30)

    def release_once_all_arrived():
        deadline = time.monotonic() + 30
        while started()[0] - watches_before + len(hub.begin.pending) < BURST and time.monotonic() < deadline:
            time.sleep(0.01)
        busy.set()

    requests = [
        pb.WatchReadingsRequest(meters=[meters[i % 3]], resume_token=tokens[meters[i % 3]] if i % 2 else "")
        for i in range(BURST)
    ]
    watches_before, jobs_before = started()
    threading.Thread(target=release_once_all_arrived, daemon=True).start()
    results = asyncio.run(burst(
        write_server.target, requests,
        lambda: [write_readings(stub, meter, (1_800_000_000, 9.5)) for meter in meters],
    ))
    watches, jobs = started()
    holder.cancel()

    assert watches - watches_before == BURST
    assert jobs - jobs_before <= 2, f"{BURST} watches took {jobs - jobs_before:.0f} database jobs to start"
    for request, (before, after) in zip(requests, results):
        meter = request.meters[0]
        assert before == (behind[meter] if request.resume_token else []), request
        assert after == [(meter, 1_800_000_000, 9.5)], request
