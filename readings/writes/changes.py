"""The change log that WatchReadings serves: reading changes as writes committed them, read by
position and pruned by age.

A watch's position is, per meter, the id of the last change it was sent. Within a meter ids follow
commit order (writes lock the meter, see readings/sources/sql/upsert.py); across meters they need
not, which is why positions are kept per meter and never as one number.
"""
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import lru_cache

from django.conf import settings
from django.db import connection, transaction
from django.db.models import Max, OuterRef, Subquery
from django.utils import timezone

from accounts.access import SERVICE, Caller, NotSignedIn, caller_for_bearer
from readings import tokens
from readings.domain import FieldViolation, InvalidArgument, MeterNotFound, check_meter_name
from readings.models import Meter, ReadingChange, StoreIdentity
from readings.sources.sql.citus import begin_write, is_citus
from readings.sources.sql.dialect import epoch_of, precise_epoch_of

MAX_WATCHED_METERS = 100
CHANGES_PAGE = 5_000
TOKEN_KIND = "watch"


class ChangesPruned(Exception):
    """A watch asked for changes older than the change log keeps."""


@dataclass(frozen=True)
class Change:
    id: int
    meter_id: int
    epoch: int
    value: float
    replaced: bool
    committed_epoch: float


@dataclass
class WatchStart:
    meters: dict[int, str]  # id → name
    positions: dict[int, int]  # meter id → last change id sent
    request_fields: tuple
    store: str  # the key of the database the positions belong to (StoreIdentity)
    latest: dict[int, int]  # meter id → its last change id when the watch began
    from_now: bool = False  # neither a resume token nor a start time: the positions are `latest`
    first: list[Change] = field(default_factory=list)  # the changes to catch up on, a first page


@dataclass(frozen=True)
class WatchRequest:
    """What a watch asks for: its meters, and where to begin (a resume token, a time, or now);
    and who asks, by the bearer credential the call carries ("": none; None: the project itself)."""
    names: tuple[str, ...]
    resume_token: str = ""
    start: datetime | None = None
    credential: str | None = None


@dataclass(frozen=True)
class _MeterState:
    id: int
    pruned_through: int
    last: int  # the id of its last change (0: none)
    account_id: int | None
    public: bool

    @property
    def pk(self) -> int:
        return self.id


def _checked_names(names: tuple[str, ...]) -> list[str]:
    checked = list(dict.fromkeys(names))
    if not checked:
        raise InvalidArgument(FieldViolation("meters", "name at least one meter"))
    if len(checked) > MAX_WATCHED_METERS:
        raise InvalidArgument(FieldViolation("meters", f"{len(checked)} meters; at most {MAX_WATCHED_METERS}"))
    # A name no meter can have is a bad request, as in every other RPC, not a meter not found.
    violations = []
    for index, name in enumerate(names):
        try:
            check_meter_name(name)
        except ValueError as exc:
            violations.append(FieldViolation(f"meters[{index}]", str(exc)))
    if violations:
        raise InvalidArgument(*violations)
    return checked


def _meter_states(names: set[str]) -> dict[str, _MeterState]:
    """Each named meter's id, how far its log was pruned and its last change, in one query (the
    last change by the (meter, id) index, one probe a meter, however long the log)."""
    fields = ("name", "pk", "changes_pruned_through", "account_id", "public")
    if is_citus():
        # Citus runs no subquery from the meters (a reference table) into the log (distributed)
        # for each meter: the meters first, then one probe a meter, each routed to its shard.
        found = list(Meter.objects.filter(name__in=names).values_list(*fields))
        last = last_changes([pk for _, pk, *_ in found])
        rows = [(name, pk, pruned, last.get(pk), account_id, public) for name, pk, pruned, account_id, public in found]
    else:
        newest = ReadingChange.objects.filter(meter_id=OuterRef("pk")).order_by("-id").values("id")[:1]
        rows = Meter.objects.filter(name__in=names).annotate(last=Subquery(newest)).values_list(
            "name", "pk", "changes_pruned_through", "last", "account_id", "public",
        )
    return {
        name: _MeterState(pk, pruned or 0, last or 0, account_id, public)
        for name, pk, pruned, last, account_id, public in rows
    }


def last_changes(meter_ids: list[int]) -> dict[int, int]:
    """Each of `meter_ids`' last change id (meters without changes left out), one index probe a
    meter."""
    if not meter_ids:
        return {}
    table = ReadingChange._meta.db_table
    with connection.cursor() as cursor:
        cursor.execute(" UNION ALL ".join(
            [f"(SELECT meter_id, id FROM {table} WHERE meter_id = %s ORDER BY id DESC LIMIT 1)"] * len(meter_ids)
        ), list(meter_ids))
        return {int(meter_id): int(id_) for meter_id, id_ in cursor.fetchall()}


def watch_starts(requests: list[WatchRequest]) -> list["WatchStart | Exception"]:
    """Where each of `requests` begins, or the error that refuses it, in a few queries for all of
    them together: a burst of watches opened at once costs about what one does.

    A watch from now begins after each meter's last change as read here; the hub that serves the
    watch may move that position on to what it has already handed out (grpc_api/watch.py)."""
    results: list[WatchStart | Exception] = []
    named = []
    for request in requests:
        try:
            named.append(_checked_names(request.names))
        except InvalidArgument as exc:
            named.append(exc)
    states = _meter_states({name for names in named if isinstance(names, list) for name in names})
    store = StoreIdentity.current() if states else ""
    for request, names in zip(requests, named):
        try:
            if isinstance(names, Exception):
                raise names
            caller = SERVICE if request.credential is None else caller_for_bearer(request.credential)
            results.append(_watch_start(request, names, states, store, caller))
        except (InvalidArgument, MeterNotFound, ChangesPruned, NotSignedIn) as exc:
            results.append(exc)
    pages = changes_after_each([start.positions for start in results if isinstance(start, WatchStart) and not start.from_now])
    for start in (start for start in results if isinstance(start, WatchStart) and not start.from_now):
        start.first = pages.pop(0)
    return results


def changes_after_each(positions: list[dict[int, int]]) -> list[list[Change]]:
    """changes_after() of each of `positions`; watches that stand at the same positions (opened
    from the same token) share one query."""
    pages: dict[tuple, list[Change]] = {}
    found = []
    for each in positions:
        key = tuple(sorted(each.items()))
        if key not in pages:
            pages[key] = changes_after(each)
        found.append(pages[key])
    return found


def watch_start(names: list[str], *, resume_token: str = "", start: datetime | None = None, credential: str | None = None) -> WatchStart:
    """Where a watch of `names` begins: after a resume token, at a time, or now."""
    (result,) = watch_starts([WatchRequest(tuple(names), resume_token, start, credential)])
    if isinstance(result, Exception):
        raise result
    return result


def _watch_start(
    request: WatchRequest, names: list[str], states: dict[str, _MeterState], store: str, caller: Caller = SERVICE,
) -> WatchStart:
    # A resume token names the meters of the request that it was issued to: these same names.
    for name in names:
        if name not in states or not caller.sees(states[name]):
            raise MeterNotFound(name)
    meters = {states[name].id: name for name in names}
    latest = {states[name].id: states[name].last for name in names}
    request_fields = tuple(sorted(names))
    if request.resume_token:
        saved = tokens.redeem(TOKEN_KIND, request.resume_token, field="resume_token", request_fields=request_fields)
        if isinstance(saved, list):  # [store, positions]; tokens made before stores had keys are plain positions
            token_store, saved = saved
            if token_store != store:
                raise InvalidArgument(FieldViolation(
                    "resume_token", "was issued by another deployment's store, whose changes are not these; "
                    "watch again without it (from a start_time, or now)",
                ))
        positions = {meter_id: int(saved[name]) for meter_id, name in meters.items()}
    elif request.start is not None:
        positions = _positions_before(list(meters), request.start)
    else:  # from now nothing can have been missed
        return WatchStart(meters, latest, request_fields, store, latest, from_now=True)
    for name in names:
        if positions[states[name].id] < states[name].pruned_through:
            raise ChangesPruned(
                f"changes of meter {name!r} before this watch's position are no longer kept "
                f"(CHANGE_LOG_DAYS={settings.CHANGE_LOG_DAYS:g}): read the readings with ListReadings "
                "and watch from now"
            )
    return WatchStart(meters, positions, request_fields, store, latest)


def resume_token(start: WatchStart, positions: dict[int, int]) -> str:
    by_name = tuple((start.meters[meter_id], position) for meter_id, position in positions.items())
    return _signed_position(settings.SECRET_KEY, start.store, start.request_fields, by_name)


@lru_cache(maxsize=4096)
def _signed_position(secret_key: str, store: str, request_fields: tuple, by_name: tuple) -> str:
    # Watches opened together on the same meters stand at the same positions: their tokens are
    # signed once (a token is the same bytes for the same position; see readings/tokens.py).
    return tokens.issue(TOKEN_KIND, position=[store, dict(by_name)], request_fields=request_fields)


def _positions_before(meter_ids: list[int], start: datetime) -> dict[int, int]:
    """Each meter's last change committed before `start`."""
    changes = ReadingChange.objects.filter(meter_id__in=meter_ids, committed_at__lt=start)
    last = dict(changes.values("meter_id").annotate(last=Max("id")).values_list("meter_id", "last"))
    return {meter_id: last.get(meter_id) or 0 for meter_id in meter_ids}


def changes_after(positions: dict[int, int], *, limit: int = CHANGES_PAGE) -> list[Change]:
    """Changes of the meters in `positions` after each one's own position, in id order, at most
    `limit` (fewer: none others wait). Each meter's bound is in the query: with one bound for all,
    a busy meter's old changes would fill every page of a quiet one's watch."""
    if not positions:
        return []
    bounds = " OR ".join(["(meter_id = %s AND id > %s)"] * len(positions))
    table = ReadingChange._meta.db_table
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT id, meter_id, {epoch_of('time')}, value, replaced, {precise_epoch_of('committed_at')} "
            f"FROM {table} WHERE {bounds} ORDER BY id LIMIT %s",
            [*(x for pair in positions.items() for x in pair), limit],
        )
        rows = cursor.fetchall()
    return [Change(int(i), int(m), int(e), float(v), bool(r), float(c)) for i, m, e, v, r, c in rows]


def prune_changes(*, older_than: timedelta | None = None) -> int:
    """Delete changes committed before `older_than` ago (CHANGE_LOG_DAYS by default), noting on
    each meter how far its log was pruned; returns how many were deleted."""
    older_than = older_than if older_than is not None else timedelta(days=settings.CHANGE_LOG_DAYS)
    cutoff = timezone.now() - older_than
    with transaction.atomic():
        with connection.cursor() as cursor:
            begin_write(cursor)  # it reads the log across meters, then updates meters (Citus)
        old = ReadingChange.objects.filter(committed_at__lt=cutoff)
        for meter_id, last in old.values("meter_id").annotate(last=Max("id")).values_list("meter_id", "last"):
            Meter.objects.filter(pk=meter_id, changes_pruned_through__lt=last).update(changes_pruned_through=last)
        deleted, _ = old.delete()
    return deleted


def utc(epoch: float) -> datetime:
    return datetime.fromtimestamp(epoch, UTC)
