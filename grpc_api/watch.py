"""WatchReadings: reading changes pushed to watchers as writers commit them.

Watches are served on the gRPC server's event loop, not on its worker threads: a thousand open
watches cost a thousand small queues, not a thousand threads. One hub per server process looks for
new changes of the watched meters, when PostgreSQL notifies it (LISTEN, on a thread of its own) or
every WATCH_POLL_SECONDS on SQLite, and hands each change to the queues of that meter's watches.
A watch first catches up from the change log itself, then takes what the hub hands it; per meter
it sends only changes past its own position, so that a change reaches it exactly once.
Database work runs on a small executor of its own.
"""
import asyncio
import logging
import random
import threading
from concurrent.futures import ThreadPoolExecutor

import grpc
from django.conf import settings
from django.db import close_old_connections, connection
from prometheus_client import Histogram

from grpc_api import convert
from grpc_api.errors import status_for
from grpc_api.permissions import credential_of
from grpc_api.rpc_metrics import WATCH_START_BATCHES
from grpc_api.gen.meterusage.v1 import meter_usage_pb2 as pb
from readings.domain import InvalidArgument, instant_violation
from readings.sources.sql.dialect import is_postgresql
from readings.sources.sql.upsert import CHANGES_CHANNEL
from readings.writes import changes

logger = logging.getLogger(__name__)

# Changes a watch may have waiting for a client that does not read; past it the client is
# disconnected, to resume with its last token.
WATCH_QUEUE_CHANGES = 50_000
# With PostgreSQL notifying, a look every so often still catches what a lost connection missed.
NOTIFIED_POLL_SECONDS = 5.0


class Watch:
    def __init__(self, meter_ids: list[int]):
        self.meter_ids = meter_ids
        self.queue: asyncio.Queue[list[changes.Change]] = asyncio.Queue()
        self.waiting = 0
        self.overflowed = False

    def offer(self, batch: list[changes.Change]) -> None:
        if self.overflowed:
            return
        self.waiting += len(batch)
        if self.waiting > WATCH_QUEUE_CHANGES:
            self.overflowed = True
        self.queue.put_nowait(batch)

    def close(self) -> None:
        """End the watch: the server is stopping."""
        self.queue.put_nowait(None)

    async def next_batch(self, timeout: float) -> list[changes.Change] | None:
        """The next changes handed over; None once the watch is closed."""
        batch = await asyncio.wait_for(self.queue.get(), timeout)
        if batch is not None:
            self.waiting -= len(batch)
        return batch


class ChangeHub:
    """Hands the changes of watched meters to their watches (one per server process)."""

    def __init__(self, loop: asyncio.AbstractEventLoop):
        self.loop = loop
        self.executor = ThreadPoolExecutor(max_workers=2, thread_name_prefix="grpc-watch")
        self.watches: dict[int, set[Watch]] = {}
        self.positions: dict[int, int] = {}
        self.wake = asyncio.Event()
        self.stopping = threading.Event()
        self.task: asyncio.Task | None = None
        self.listener: threading.Thread | None = None
        # Watches opened together start together: their starts, and then their catch-ups, are
        # each read in one database job, not one job (and one wait for a thread) apiece.
        self.begin = Batched(self, changes.watch_starts, WATCH_START_BATCHES)
        self.catch_up = Batched(self, changes.changes_after_each)

    async def db(self, function, *args, **kwargs):
        def call():
            close_old_connections()
            return function(*args, **kwargs)

        return await self.loop.run_in_executor(self.executor, call)

    def start(self) -> None:
        self.task = self.loop.create_task(self.run())
        if is_postgresql():
            self.listener = threading.Thread(target=self.listen, name="grpc-watch-listen", daemon=True)
            self.listener.start()

    async def stop(self) -> None:
        """End every watch (their clients resume elsewhere with their tokens) and let go of the
        database connections."""
        self.stopping.set()
        for watch in {w for watchers in self.watches.values() for w in watchers}:
            watch.close()
        if self.task:
            self.task.cancel()
        # The executor's threads end, and with them their connections (collected by the server).
        await self.loop.run_in_executor(None, self.executor.shutdown)
        if self.listener is not None:
            await self.loop.run_in_executor(None, self.listener.join, 5)

    def add(self, watch: Watch, start: changes.WatchStart) -> dict[int, int]:
        """Hand `watch` the changes of its meters from now on; returns the positions it begins
        from, and which of them it must still catch up on from the change log itself."""
        positions = dict(start.positions)
        for meter_id in watch.meter_ids:
            # A meter not watched yet is looked for past its last change as the start read it;
            # one watched already, past what the hub has handed out.
            handed_out = self.positions.setdefault(meter_id, start.latest[meter_id])
            if start.from_now:
                # From now: what the hub handed out before is not this watch's to catch up on.
                positions[meter_id] = max(positions[meter_id], handed_out)
            self.watches.setdefault(meter_id, set()).add(watch)
        return positions

    def behind(self, positions: dict[int, int]) -> bool:
        """Whether changes the hub handed out before a watch joined lie past its `positions`."""
        return any(position < self.positions.get(meter_id, 0) for meter_id, position in positions.items())

    def remove(self, watch: Watch) -> None:
        for meter_id in watch.meter_ids:
            watchers = self.watches.get(meter_id)
            if watchers is not None:
                watchers.discard(watch)
                if not watchers:
                    del self.watches[meter_id]
                    self.positions.pop(meter_id, None)

    async def run(self) -> None:
        every = NOTIFIED_POLL_SECONDS if self.listener else settings.WATCH_POLL_SECONDS
        while not self.stopping.is_set():
            try:
                await asyncio.wait_for(self.wake.wait(), every)
            except TimeoutError:
                pass
            self.wake.clear()
            if not self.watches:
                continue
            try:
                await self.deliver()
            except Exception:  # noqa: BLE001  (a database hiccup must not end every watch)
                logger.exception("watch: looking for changes failed; trying again")
                await asyncio.sleep(1)

    async def deliver(self) -> None:
        while True:
            positions = {m: p for m, p in self.positions.items() if m in self.watches}
            if not positions:
                return
            found = await self.db(changes.changes_after, positions)
            by_meter: dict[int, list[changes.Change]] = {}
            for change in found:
                # A meter no longer watched, or moved past meanwhile, is left alone.
                if change.id > self.positions.get(change.meter_id, change.id):
                    by_meter.setdefault(change.meter_id, []).append(change)
            for meter_id, batch in by_meter.items():
                self.positions[meter_id] = batch[-1].id
                for watch in list(self.watches.get(meter_id, ())):
                    watch.offer(batch)
            if len(found) < changes.CHANGES_PAGE:
                return

    def listen(self) -> None:
        """PostgreSQL's notifications of committed writes, as wake-ups of the hub."""
        import psycopg

        params = connection.get_connection_params()
        params.pop("cursor_factory", None)
        params.pop("context", None)
        while not self.stopping.is_set():
            try:
                with psycopg.connect(**params, autocommit=True) as listening:
                    listening.execute(f"LISTEN {CHANGES_CHANNEL}")
                    self.loop.call_soon_threadsafe(self.wake.set)  # what came while not listening
                    while not self.stopping.is_set():
                        for _ in listening.notifies(timeout=1.0, stop_after=1):
                            self.loop.call_soon_threadsafe(self.wake.set)
            except Exception as exc:  # noqa: BLE001  (listen again; the poll covers the gap)
                if self.stopping.is_set():
                    return
                logger.warning("watch: LISTEN connection lost (%s); listening again", exc)
                self.stopping.wait(1.0)


class Batched:
    """Calls of `function(items) -> [result or exception per item]` in the hub's database
    executor, gathered: the items that arrive while one call runs go together in the next, at
    most BATCH_ITEMS at a time."""

    BATCH_ITEMS = 500

    def __init__(self, changes_hub: ChangeHub, function, sizes: Histogram | None = None):
        self.hub = changes_hub
        self.function = function
        self.sizes = sizes
        self.pending: list[tuple[object, asyncio.Future]] = []
        self.runner: asyncio.Task | None = None

    async def __call__(self, item):
        future = self.hub.loop.create_future()
        self.pending.append((item, future))
        if self.runner is None or self.runner.done():
            self.runner = self.hub.loop.create_task(self.run())
        return await future

    async def run(self) -> None:
        while self.pending:
            # Calls that arrived together are handed to the loop one by one: let them all in.
            await asyncio.sleep(0)
            batch = self.pending[: self.BATCH_ITEMS]
            del self.pending[: self.BATCH_ITEMS]
            batch = [(item, future) for item, future in batch if not future.done()]  # callers gone
            if not batch:
                continue
            if self.sizes is not None:
                self.sizes.observe(len(batch))
            try:
                results = await self.hub.db(self.function, [item for item, _ in batch])
            except Exception as exc:  # noqa: BLE001  (the database failed them all alike)
                results = [exc] * len(batch)
            for (_, future), result in zip(batch, results):
                if future.done():
                    continue
                if isinstance(result, Exception):
                    future.set_exception(result)
                else:
                    future.set_result(result)


# One hub per event loop, that is per gRPC server (tests run several in one process).
_hubs: dict[asyncio.AbstractEventLoop, ChangeHub] = {}


def hub() -> ChangeHub:
    loop = asyncio.get_running_loop()
    found = _hubs.get(loop)
    if found is None:
        found = _hubs[loop] = ChangeHub(loop)
        found.start()
    return found


async def stop_hub() -> None:
    """Stop the hub of the running loop, if it has one."""
    found = _hubs.pop(asyncio.get_running_loop(), None)
    if found is not None:
        await found.stop()


def _message(start: changes.WatchStart, batch: list[changes.Change], positions: dict, caught_up: bool) -> pb.WatchReadingsResponse:
    return pb.WatchReadingsResponse(
        changes=[
            pb.ReadingChange(
                meter=start.meters[c.meter_id],
                time=convert.timestamp(c.epoch),
                value=c.value,
                replaced=c.replaced,
                commit_time=convert.timestamp(float(c.committed_epoch)),
            )
            for c in batch
        ],
        resume_token=changes.resume_token(start, positions),
        caught_up=caught_up,
    )


def _new(batch: list[changes.Change], positions: dict[int, int]) -> list[changes.Change]:
    """The changes of `batch` past each meter's position, which then moves past them."""
    fresh = []
    for change in batch:
        if change.id > positions[change.meter_id]:
            positions[change.meter_id] = change.id
            fresh.append(change)
    return fresh


async def watch_readings(request, context):
    """The WatchReadings handler (an async generator, run on the server's event loop)."""
    changes_hub = hub()
    try:
        start_time = convert.instant_of(request, "start_time")
        if start_time is not None and (violation := instant_violation("start_time", start_time)) is not None:
            raise InvalidArgument(violation)
        start = await changes_hub.begin(changes.WatchRequest(
            tuple(request.meters), request.resume_token,
            None if start_time is None else changes.utc(start_time.seconds + start_time.nanos / 1e9),
            credential_of(context.invocation_metadata()),
        ))
    except Exception as exc:  # noqa: BLE001  (every error gets a canonical status)
        await _abort(context, exc)
    watch = Watch(list(start.meters))
    # From here on the hub queues what commits; what committed since the start read the log is
    # either queued too or read again below (the watch is then behind the hub), and sent once.
    positions = changes_hub.add(watch, start)
    try:
        # The start read a first page of what the watch is to catch up on; only a watch still
        # behind what the hub has handed out (before it joined) reads the log itself again.
        batch = _new(start.first, positions)
        while changes_hub.behind(positions):
            if batch:
                yield _message(start, batch, positions, caught_up=False)
            batch = _new(await changes_hub.catch_up(positions), positions)
            if not batch:
                break
        # The last of the catch-up (often all of it) goes in the message that says caught up.
        message = _message(start, batch, positions, caught_up=True)
        yield message
        heartbeat = pb.WatchReadingsResponse(resume_token=message.resume_token, caught_up=True)
        if request.catch_up_only:
            return
        while True:
            try:
                # Heartbeats at a random point of the period: watches opened together do not all
                # beat at once.
                batch = await watch.next_batch(settings.WATCH_HEARTBEAT_SECONDS * random.uniform(0.5, 1.0))
            except TimeoutError:
                yield heartbeat  # the position has not moved since the last message
                continue
            if batch is None:
                await context.abort(
                    grpc.StatusCode.UNAVAILABLE,
                    "the server is stopping; watch again with the last resume_token received",
                )
            if watch.overflowed:
                await context.abort(
                    grpc.StatusCode.RESOURCE_EXHAUSTED,
                    "the watch fell too far behind; resume with the last resume_token received",
                )
            fresh = _new(batch, positions)
            if fresh:
                message = _message(start, fresh, positions, caught_up=True)
                heartbeat = pb.WatchReadingsResponse(resume_token=message.resume_token, caught_up=True)
                yield message
    finally:
        changes_hub.remove(watch)


async def _abort(context, error: Exception):
    """Abort with the status `error` stands for, on the event loop."""
    status = status_for(error)
    await context.abort(status.code, status.details, status.trailing_metadata)
