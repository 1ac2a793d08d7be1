"""Live writes: readings as meters send them (WriteReadings, the HTTP write, MQTT messages).

Rows arrive as text, cleaned by the rules and with the reasons of a file import
(`readings.writes.rows.clean_rows`); a write is atomic: any invalid row refuses all of it, rows
without a value are skipped and reported. Writes go through the one upsert of the relational store
(`readings.sources.sql.upsert`), which also feeds the change log that WatchReadings serves. A meter
served by a series store (InfluxDB) gets the readings there too, before the relational transaction
commits, as `seed_influx` does.
"""
from dataclasses import dataclass

import numpy as np
from django.conf import settings
from django.db import transaction

from accounts.access import SERVICE, WRITE_NEEDS_CREDENTIAL, Caller, NotSignedIn
from readings.domain import (
    MAX_WRITE_ROWS, FieldViolation, InvalidArgument, MeterNotFound, WriteBy, check_meter_name, quoted,
)
from readings.models import Meter
from readings.selectors import forget_meters
from readings.sources import Series, SeriesStore, readings_sources
from readings.sources.csv import CsvSource
from readings.sources.sql.upsert import StagedRows, upsert_readings
from readings.writes.counts import WriteCounts
from readings.writes.rows import Ambiguous, RowProblem, TypedTimes, clean_rows, clean_typed_rows


@dataclass
class RowsIn:
    """Rows of one meter as sent: times as text (naive wall times in the meter's zone, or with a
    UTC offset) and values as text or numbers, as messages carry them; or, from a gRPC write,
    times already in types and values as numbers. Rows are numbered from `first_line`, or by
    `positions` (their places in a request that mixes meters)."""

    meter_name: str
    times: list[str] | TypedTimes
    values: list | np.ndarray
    first_line: int = 1
    positions: list[int] | None = None


@dataclass
class CleanWrite:
    meter: Meter
    epochs: np.ndarray
    values: np.ndarray
    rows_read: int
    problems: list[RowProblem]  # the skipped rows
    lines: np.ndarray | None = None  # each clean reading's row number

    @property
    def rows_skipped(self) -> int:
        return len(self.problems)


class RowsInvalid(InvalidArgument):
    """Rows that fail a write: (meter name, problem) each, the problem's line the row's place in
    the request (`readings[i]`); `count` of them in all."""

    def __init__(self, problems: list[tuple[str, RowProblem]], count: int = 0):
        self.problems = problems
        violations = [
            FieldViolation(f"readings[{problem.line}]", f"{problem.reason} (meter {quoted(meter)}, value {quoted(problem.value)})")
            for meter, problem in problems
        ]
        super().__init__(*violations, count=count)


def meters_for_write(names: list[str], *, create: bool = False, caller: Caller = SERVICE) -> dict[str, Meter]:
    """The meters `names` name, each one `caller` may write; unknown ones are created with
    `create` (by a caller who sees every meter), else MeterNotFound, as for a meter the caller
    may not see. A meter whose source is read-only (a CSV file) cannot be written to."""
    if caller.is_anonymous:  # refused before anything about the meters is told
        raise NotSignedIn(WRITE_NEEDS_CREDENTIAL)
    found = {meter.name: meter for meter in Meter.objects.filter(name__in=set(names))}
    for name in dict.fromkeys(names):
        if name in found:
            if not caller.sees(found[name]):
                raise MeterNotFound(name)
            caller.check_write(found[name])
            continue
        try:
            check_meter_name(name)
        except ValueError as exc:
            raise InvalidArgument(FieldViolation("meter", f"meter name {exc}")) from None
        if not (create and caller.everything):
            raise MeterNotFound(name)
        caller.check_write(Meter(name=name))
        found[name], _ = Meter.objects.get_or_create(name=name)
    for meter in found.values():
        if isinstance(readings_sources[meter.source], CsvSource):
            raise InvalidArgument(FieldViolation(
                "meter", f"meter {meter.name!r} is served by the read-only source {meter.source!r}"
            ))
    return found


def clean_write(
    meter: Meter, rows: RowsIn, *, unit: str = "reading", names: np.ndarray | None = None,
    ambiguous: Ambiguous = Ambiguous.INFER,
) -> CleanWrite:
    """The rows cleaned in the meter's zone; RowsInvalid when any row is invalid. Reasons name
    rows by `unit` and `names` (the client's numbers by position), else by position."""
    if isinstance(rows.times, TypedTimes):
        batch, report = clean_typed_rows(
            rows.times, rows.values, time_zone=meter.time_zone, ambiguous=ambiguous, positions=rows.positions,
            unit=unit, names=names,
        )
    else:
        batch, report = clean_rows(
            [str(t) for t in rows.times], [_value_text(v) for v in rows.values], time_zone=meter.time_zone,
            ambiguous=ambiguous, first_line=rows.first_line, positions=rows.positions, unit=unit,
        )
    invalid = [(meter.name, p) for p in report.problems if p.kind == "invalid"]
    if invalid:
        raise RowsInvalid(invalid, count=report.rows_invalid)
    return CleanWrite(meter, batch.epochs, batch.values, report.rows_read, list(report.problems), batch.lines)


def clean_writes_together(meter: Meter, writes: list[RowsIn]) -> CleanWrite | None:
    """Several writes of one meter (MQTT messages of a batch) cleaned in one pass, duplicates
    settled within each write; None when any row is invalid (then each write must be cleaned on
    its own, to tell which are). The writes' rows keep their order: a later write's value wins."""
    times = [t if type(t) is str else str(t) for rows in writes for t in rows.times]
    # Most values are floats: their text is their repr, without a call per value.
    values = [repr(v) if type(v) is float else _value_text(v) for rows in writes for v in rows.values]
    groups = np.repeat(np.arange(len(writes)), [len(rows.times) for rows in writes])
    batch, report = clean_rows(
        times, values, time_zone=meter.time_zone, positions=list(range(len(times))), groups=groups
    )
    if report.rows_invalid:
        return None
    return CleanWrite(meter, batch.epochs, batch.values, report.rows_read, list(report.problems), batch.lines)


def _value_text(value) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):  # JSON true is no reading
        return str(value).lower()
    if isinstance(value, float):
        return repr(value)
    return str(value)


def store_writes(writes: list[CleanWrite], *, by: WriteBy) -> WriteCounts:
    """Commit the cleaned writes in one transaction, recorded as written `by` someone, and count
    what they did together. Where several writes give one (meter, time), the later one's value is
    stored; a reading counts as inserted, updated or unchanged against the store as it was before
    the transaction."""
    writes_with_rows = [w for w in writes if len(w.epochs)]
    meters = list({w.meter.pk: w.meter for w in writes_with_rows}.values())
    with transaction.atomic():
        if meters:
            counts = upsert_readings(meters=meters, batches=[_later_wins(writes_with_rows)], by=by)
        else:
            counts = WriteCounts()
        _write_series_stores(writes)
    # The meters kept for a second would still show their counts from before the write.
    forget_meters()
    for w in writes:
        counts.skipped += w.rows_skipped
        counts.skipped_rows.extend((w.meter.name, p) for p in w.problems)
    return counts


def _later_wins(writes: list[CleanWrite]) -> StagedRows:
    """The writes' rows, one per (meter, time): the last write's value for it, a correction."""
    meter_ids = np.concatenate([np.full(len(w.epochs), w.meter.pk, dtype=np.int64) for w in writes])
    epochs = np.concatenate([w.epochs for w in writes]).astype(np.int64)
    values = np.concatenate([w.values for w in writes]).astype(np.float64)
    # A stable sort keeps the writes' order within each (meter, time); the last of each run wins.
    order = np.lexsort((np.arange(len(epochs)), epochs, meter_ids))
    meter_ids, epochs, values = meter_ids[order], epochs[order], values[order]
    last = np.ones(len(epochs), dtype=bool)
    last[:-1] = (meter_ids[1:] != meter_ids[:-1]) | (epochs[1:] != epochs[:-1])
    return StagedRows(meter_ids[last], order[last], epochs[last], values[last])


def _write_series_stores(writes: list[CleanWrite]) -> None:
    for w in writes:
        store = readings_sources[w.meter.source]
        if isinstance(store, SeriesStore) and len(w.epochs):
            order = np.argsort(w.epochs, kind="stable")
            store.write(w.meter.name, Series(w.epochs[order], w.values[order]))


def readings_write(
    rows: list[RowsIn], *, unit: str = "reading", names: np.ndarray | None = None,
    create_meters: bool | None = None, ambiguous: Ambiguous = Ambiguous.INFER,
    caller: Caller = SERVICE, written_by: str | None = None, channel: str = "grpc",
) -> WriteCounts:
    """Write rows of one or more meters atomically, each meter's rows cleaned together (as one
    file would be), as `caller` (recorded as its author unless `written_by` names another);
    RowsInvalid names every invalid row and nothing is written then. Reasons name rows by `unit`
    and `names` (the client's numbers by position), else by position."""
    total_rows = sum(len(r.times) for r in rows)
    if total_rows > MAX_WRITE_ROWS:
        raise InvalidArgument(FieldViolation("readings", f"{total_rows} rows in one write; at most {MAX_WRITE_ROWS}"))
    if create_meters is None:
        create_meters = settings.INGEST_CREATE_METERS
    meters = meters_for_write([r.meter_name for r in rows], create=create_meters, caller=caller)
    cleaned, invalid = [], []
    count = 0
    for r in rows:
        try:
            cleaned.append(clean_write(meters[r.meter_name], r, unit=unit, names=names, ambiguous=ambiguous))
        except RowsInvalid as exc:
            invalid.extend(exc.problems)
            count += exc.count
    if invalid:
        raise RowsInvalid(sorted(invalid, key=lambda item: item[1].line), count=count)
    # Who wrote is recorded with the write ("user:ann", "key:ab12cd34"), over `channel`.
    return store_writes(cleaned, by=WriteBy(channel, written_by or caller.name))


def rows_by_meter(meter_names: list[str], times: list[str] | TypedTimes, values) -> list[RowsIn]:
    """Rows of a request that mixes meters, grouped per meter, each keeping its place (from 0)."""
    places: dict[str, list[int]] = {}
    for position, name in enumerate(meter_names):
        places.setdefault(name, []).append(position)
    if isinstance(times, TypedTimes):
        values = np.asarray(values, dtype=np.float64)
        return [RowsIn(name, times.take(rows), values[rows], positions=rows) for name, rows in places.items()]
    return [
        RowsIn(name, [times[i] for i in rows], [values[i] for i in rows], positions=rows) for name, rows in places.items()
    ]
