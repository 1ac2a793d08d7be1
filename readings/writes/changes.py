"""The change log that WatchReadings serves: reading changes as writes committed them, read by
position and pruned by age.

A watch's position is, per meter, the id of the last change it was sent. Within a meter ids follow
commit order (writes lock the meter, see readings/sources/sql/upsert.py); across meters they need
not, which is why positions are kept per meter and never as one number.
"""
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from django.conf import settings
from django.db import connection, transaction
from django.db.models import Max
from django.utils import timezone

from readings import tokens
from readings.domain import FieldViolation, InvalidArgument, MeterNotFound, check_meter_name
from readings.models import Meter, ReadingChange, StoreIdentity
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


def watched_meters(names: list[str]) -> dict[int, str]:
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
    found = dict(Meter.objects.filter(name__in=checked).values_list("name", "pk"))
    for name in checked:
        if name not in found:
            raise MeterNotFound(name)
    return {found[name]: name for name in checked}


def watch_start(names: list[str], *, resume_token: str = "", start: datetime | None = None) -> WatchStart:
    """Where a watch of `names` begins: after a resume token, at a time, or now."""
    meters = watched_meters(names)
    request_fields = tuple(sorted(meters.values()))
    store = StoreIdentity.current()
    if resume_token:
        saved = tokens.redeem(TOKEN_KIND, resume_token, field="resume_token", request_fields=request_fields)
        if isinstance(saved, list):  # [store, positions]; tokens made before stores had keys are plain positions
            token_store, saved = saved
            if token_store != store:
                raise InvalidArgument(FieldViolation(
                    "resume_token", "was issued by another deployment's store, whose changes are not these; "
                    "watch again without it (from a start_time, or now)",
                ))
        positions = {meter_id: int(saved[name]) for meter_id, name in meters.items()}
        _check_kept(meters, positions)
    else:
        positions = _positions_at(list(meters), start)
        if start is not None:  # from now nothing can have been missed
            _check_kept(meters, positions)
    return WatchStart(meters, positions, request_fields, store)


def resume_token(start: WatchStart, positions: dict[int, int]) -> str:
    by_name = {start.meters[meter_id]: position for meter_id, position in positions.items()}
    return tokens.issue(TOKEN_KIND, position=[start.store, by_name], request_fields=start.request_fields)


def _positions_at(meter_ids: list[int], start: datetime | None) -> dict[int, int]:
    changes = ReadingChange.objects.filter(meter_id__in=meter_ids)
    if start is not None:
        changes = changes.filter(committed_at__lt=start)
    last = dict(changes.values("meter_id").annotate(last=Max("id")).values_list("meter_id", "last"))
    return {meter_id: last.get(meter_id) or 0 for meter_id in meter_ids}


def last_positions(meter_ids: list[int]) -> dict[int, int]:
    return _positions_at(meter_ids, None)


def _check_kept(meters: dict[int, str], positions: dict[int, int]) -> None:
    pruned = dict(Meter.objects.filter(pk__in=list(meters)).values_list("pk", "changes_pruned_through"))
    for meter_id, position in positions.items():
        if position < pruned.get(meter_id, 0):
            raise ChangesPruned(
                f"changes of meter {meters[meter_id]!r} before this watch's position are no longer kept "
                f"(CHANGE_LOG_DAYS={settings.CHANGE_LOG_DAYS:g}): read the readings with ListReadings "
                "and watch from now"
            )


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
        old = ReadingChange.objects.filter(committed_at__lt=cutoff)
        for meter_id, last in old.values("meter_id").annotate(last=Max("id")).values_list("meter_id", "last"):
            Meter.objects.filter(pk=meter_id, changes_pruned_through__lt=last).update(changes_pruned_through=last)
        deleted, _ = old.delete()
    return deleted


def utc(epoch: float) -> datetime:
    return datetime.fromtimestamp(epoch, UTC)
