"""The rules every writer cleans rows by: a file import, a seed, the gRPC and HTTP writes, MQTT.

Rows arrive as text (a time and a value, as a CSV file holds them) and leave as clean, UTC,
columnar batches, or as problems with the reasons an import gives: `skipped` rows carry no value,
`invalid` rows fail the write. Naive times are read in the meter's zone; those of an hour that
repeats when clocks go back wait until every row is in hand, since only the rows' order tells which
pass they belong to.
"""
import enum
import math
import re
import zoneinfo
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import NamedTuple

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from readings.domain import MAX_EPOCH, MIN_EPOCH, SPAN_TEXT, quoted

TIME_COLUMN = "time"
VALUE_COLUMN = "meterusage"
PROBLEMS_KEPT = 1000
# Markers of a missing value, beside the empty string and what float() reads as NaN or infinite.
MISSING_MARKERS = frozenset({"na", "n/a", "null", "none"})
_DECIMAL_COMMA = re.compile(r"^[+-]?\d+,\d+$")


class Code(enum.StrEnum):
    """Why a row is set aside, for programs (the reason says it for people)."""

    TIME_EMPTY = "TIME_EMPTY"
    TIME_NOT_A_TIME = "TIME_NOT_A_TIME"
    TIME_FRACTIONAL = "TIME_FRACTIONAL"
    TIME_WITH_ZONE = "TIME_WITH_ZONE"
    TIME_OUT_OF_SPAN = "TIME_OUT_OF_SPAN"
    TIME_SKIPPED_BY_CLOCK = "TIME_SKIPPED_BY_CLOCK"
    TIME_AMBIGUOUS = "TIME_AMBIGUOUS"
    VALUE_NOT_A_NUMBER = "VALUE_NOT_A_NUMBER"
    VALUE_MISSING = "VALUE_MISSING"
    DUPLICATE_ROW = "DUPLICATE_ROW"
    RETAINED_HELD = "RETAINED_HELD"
    CONFLICTING_VALUES = "CONFLICTING_VALUES"

    @property
    def field(self) -> str:
        return "value" if self.name.startswith("VALUE") else "time"


@dataclass(frozen=True)
class RowProblem:
    """A data row set aside: `skipped` rows carry no value, `invalid` rows fail the import."""

    line: int
    value: str
    reason: str
    kind: str  # "skipped" or "invalid"
    code: Code | None = None

    def as_dict(self) -> dict:
        return {"line": self.line, "value": self.value, "reason": self.reason, "kind": self.kind}


@dataclass
class RowReport:
    """What cleaning found, filled in as rows are cleaned (a file's batches as they are read)."""

    rows_read: int = 0
    rows_skipped: int = 0
    rows_invalid: int = 0
    problems: list[RowProblem] = field(default_factory=list)
    # True while every time seen is later than the one before: no duplicates are possible then.
    strictly_increasing: bool = True
    last_epoch: int | None = None

    def add_problem(self, problem: RowProblem) -> None:
        if problem.kind == "skipped":
            self.rows_skipped += 1
        else:
            self.rows_invalid += 1
        if len(self.problems) < PROBLEMS_KEPT:
            self.problems.append(problem)

    def invalid_problems(self) -> list[RowProblem]:
        return [p for p in self.problems if p.kind == "invalid"]


@dataclass(frozen=True)
class ReadingBatch:
    """Clean readings: file line numbers, UTC epoch seconds and finite values, same length."""

    lines: np.ndarray
    epochs: np.ndarray
    values: np.ndarray

    def __len__(self) -> int:
        return len(self.epochs)


class Ambiguous(enum.Enum):
    """How naive wall times in an hour that repeats when clocks go back are read."""

    # By the order of rows: the rows of the repeated hour before a step back in time are its
    # first pass, those after it the second; a file that shows no such step cannot tell.
    INFER = "infer"
    EARLIER = "earlier"  # the first pass (summer time)
    LATER = "later"  # the second pass (standard time)


@dataclass
class RepeatedHourRows:
    """Rows of repeated hours, held back until the end of the file shows which pass each is in."""

    lines: list[np.ndarray] = field(default_factory=list)
    naive: list[np.ndarray] = field(default_factory=list)
    values: list[np.ndarray] = field(default_factory=list)  # NaN: a row without a value
    texts: list[list[str]] = field(default_factory=list)


def clean_chunk(
    chunk: pa.RecordBatch,
    first_line: int,
    zone: zoneinfo.ZoneInfo,
    ambiguous: Ambiguous,
    report: RowReport,
    repeated: RepeatedHourRows,
    positions: np.ndarray | None = None,
) -> ReadingBatch:
    """The clean readings of a chunk of text rows numbered from `first_line` (or by `positions`);
    problems go to `report`, rows of a repeated hour wait in `repeated`."""
    times = chunk.column(TIME_COLUMN)
    values = chunk.column(VALUE_COLUMN)
    lines = np.arange(first_line, first_line + chunk.num_rows, dtype=np.int64) if positions is None else positions

    # A blank line is no row at all.
    blank = pc.and_(pc.equal(times, ""), pc.equal(values, "")).to_numpy(zero_copy_only=False)
    if blank.any():
        keep = ~blank
        times = times.filter(pa.array(keep))
        values = values.filter(pa.array(keep))
        lines = lines[keep]
    problems: list[RowProblem] = []
    seconds, time_ok, instant = _parse_times(times, lines, problems)
    numbers, value_ok = _parse_values(values, lines, problems)
    parsed = ParsedRows(lines, seconds, instant, time_ok, numbers, value_ok, _texts_of(times), _texts_of(values))
    return _clean_parsed(parsed, problems, zone, ambiguous, report, repeated)


@dataclass
class ParsedRows:
    """Rows whose times and values are read, not yet checked against the calendar and the meter's
    zone: times as epoch seconds (UTC for instants, wall-clock seconds for naive times), values as
    numbers (NaN or infinite: none). `time_ok` and `value_ok` are False where reading failed (the
    reason is already a problem); `time_text(i)` and `value_text(i)` quote row i in reasons."""

    lines: np.ndarray
    seconds: np.ndarray
    instant: np.ndarray
    time_ok: np.ndarray
    values: np.ndarray
    value_ok: np.ndarray
    time_text: Callable[[int], str]
    value_text: Callable[[int], str]


def _texts_of(column: pa.Array) -> Callable[[int], str]:
    return lambda i: column[int(i)].as_py()


def _clean_parsed(
    rows: ParsedRows,
    problems: list[RowProblem],
    zone: zoneinfo.ZoneInfo,
    ambiguous: Ambiguous,
    report: RowReport,
    repeated: RepeatedHourRows,
) -> ReadingBatch:
    """The rules past reading: the span served, the meter's zone, values that are none, repeated
    hours held back. Problems found here and before go to `report`."""
    lines, seconds, numbers = rows.lines, rows.seconds, rows.values
    report.rows_read += len(lines)
    time_ok = rows.time_ok & _within_supported_years(seconds, rows.time_ok, lines, rows.time_text, problems)
    epochs, local_ok, held = _to_utc_epochs(
        seconds, time_ok & ~rows.instant, zone, ambiguous, lines, rows.time_text, problems
    )
    value_ok = rows.value_ok
    ok = time_ok & local_ok & value_ok

    has_value = np.isfinite(numbers)
    for i in np.flatnonzero(ok & ~has_value):
        raw = rows.value_text(i)
        problems.append(RowProblem(int(lines[i]), raw, missing_value_reason(raw, numbers[i]), "skipped", Code.VALUE_MISSING))
    # Rows of a repeated hour wait for the end of the file, those without a value too: the
    # order of a first pass without values still tells a second pass apart.
    hold = held & time_ok & value_ok
    if hold.any():
        repeated.lines.append(lines[hold])
        repeated.naive.append(seconds[hold])
        repeated.values.append(numbers[hold])
        repeated.texts.append([rows.time_text(i) for i in np.flatnonzero(hold)])
    ok &= has_value & ~held
    for problem in sorted(problems, key=lambda p: p.line):
        report.add_problem(problem)

    batch = ReadingBatch(lines=lines[ok], epochs=epochs[ok], values=numbers[ok])
    _note_order(batch.epochs, report)
    return batch


def _parse_times(
    times: pa.Array, lines: np.ndarray, problems: list[RowProblem]
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Times as int64 seconds (naive wall times, or UTC for those with an offset), a mask of the
    rows whose time parsed and a mask of those that carried an offset (instants)."""
    none = np.zeros(len(times), dtype=bool)
    try:
        # Arrow's cast is fast, strict about the calendar (no Feb 30) and takes no offsets: the
        # common case, for a column whose every time the grammar takes as a naive time.
        if pc.all(pc.match_substring_regex(times, _NAIVE_TIME_RE2)).as_py():
            seconds = pc.cast(times, pa.timestamp("s")).cast(pa.int64()).to_numpy(zero_copy_only=False)
            return seconds, ~none, none
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        pass
    seconds = np.zeros(len(times), dtype=np.int64)
    ok = np.ones(len(times), dtype=bool)
    instant = none.copy()
    for i, raw in enumerate(times.to_pylist()):
        read = parse_time_text(raw)
        if read.seconds is None:
            ok[i] = False
            problems.append(RowProblem(int(lines[i]), raw, read.reason, "invalid", read.code))
        else:
            seconds[i], instant[i] = read.seconds, read.instant
    return seconds, ok, instant


# Naive (wall-clock) times are counted in seconds from this midnight, as UTC times are from the epoch.
WALL_EPOCH = datetime(1970, 1, 1)


def _within_supported_years(
    seconds: np.ndarray, time_ok: np.ndarray, lines: np.ndarray, time_text: Callable[[int], str],
    problems: list[RowProblem],
) -> np.ndarray:
    """Times the service can serve (years 1 to 9999, a day's margin for any zone's offset)."""
    inside = (seconds >= MIN_EPOCH) & (seconds <= MAX_EPOCH)
    for i in np.flatnonzero(time_ok & ~inside):
        raw = time_text(i)
        problems.append(RowProblem(int(lines[i]), raw, f"time {raw!r} is outside {SPAN_TEXT}", "invalid", Code.TIME_OUT_OF_SPAN))
    return inside


class TimeRead(NamedTuple):
    """A time read from text: seconds (UTC for a time with a UTC offset, wall-clock seconds for a
    naive one; None when it is no time), whether it carried an offset, and why it is no time."""

    seconds: int | None
    instant: bool = False
    code: Code | None = None
    reason: str = ""


# The one grammar of a reading's time, for every reader (files, WriteReadings' local_time, the HTTP
# write, MQTT), after surrounding spaces are trimmed; ASCII digits only:
#   date [ ("T" | "t" | " ") hh ":" mm [ ":" ss [ "." digits ] ] [ "Z" | "z" | ("+" | "-") hh ":" mm ] ]
# A time without an offset is a wall time in the meter's zone; one with an offset is an instant.
# Fractions of a second are read only to be refused by name.
_TIME_GRAMMAR = re.compile(
    r"(\d{4})-(\d{2})-(\d{2})"
    r"(?:[Tt ](\d{2}):(\d{2})(?::(\d{2})(\.\d+)?)?(?:([Zz])|([+-])(\d{2}):(\d{2}))?)?",
    re.ASCII,
)
# What Arrow's own cast may read in a whole column at once: naive times the grammar takes.
_NAIVE_TIME_RE2 = r"^\d{4}-\d{2}-\d{2}(?:[T ]\d{2}:\d{2}(?::\d{2})?)?$"


def parse_time_text(raw: str) -> TimeRead:
    """A time as text, by the one grammar every reader uses."""
    text = raw.strip()
    if not text:
        return TimeRead(None, code=Code.TIME_EMPTY, reason="time is empty")
    if "\n" in text or "\r" in text:
        return TimeRead(None, code=Code.TIME_NOT_A_TIME, reason=f"time {quoted(raw)} holds a line break")
    match = _TIME_GRAMMAR.fullmatch(text)
    not_a_time = TimeRead(None, code=Code.TIME_NOT_A_TIME, reason=f"time {quoted(raw)} is not a timestamp like 2019-01-01 00:15:00")
    if match is None:
        return not_a_time
    year, month, day, hours, minutes, seconds, fraction, zulu, sign, offset_hours, offset_minutes = match.groups()
    if fraction:
        return TimeRead(None, code=Code.TIME_FRACTIONAL, reason=f"time {quoted(raw)} has fractional seconds; whole seconds are expected")
    try:
        wall = datetime(int(year), int(month), int(day), int(hours or 0), int(minutes or 0), int(seconds or 0))
    except ValueError:
        return not_a_time
    naive = (wall - WALL_EPOCH) // timedelta(seconds=1)
    if zulu:
        return TimeRead(naive, True)
    if sign:
        if int(offset_hours) > 23 or int(offset_minutes) > 59:
            return not_a_time
        offset = (int(offset_hours) * 60 + int(offset_minutes)) * 60
        return TimeRead(naive - offset if sign == "+" else naive + offset, True)
    return TimeRead(naive)


def _parse_values(values: pa.Array, lines: np.ndarray, problems: list[RowProblem]) -> tuple[np.ndarray, np.ndarray]:
    """Values as float64 (NaN where missing), and a mask of the rows whose value parsed."""
    try:
        as_text = pc.if_else(pc.equal(values, ""), pa.scalar("nan"), values)
        numbers = pc.cast(as_text, pa.float64()).to_numpy(zero_copy_only=False)
        return numbers, np.ones(len(numbers), dtype=bool)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        pass
    numbers = np.full(len(values), np.nan)
    ok = np.ones(len(values), dtype=bool)
    for i, raw in enumerate(values.to_pylist()):
        try:
            numbers[i] = number_of_text(raw)
        except ValueError as exc:
            ok[i] = False
            problems.append(RowProblem(int(lines[i]), raw, str(exc), "invalid", Code.VALUE_NOT_A_NUMBER))
    return numbers, ok


def number_of_text(raw: str) -> float:
    """A value as a file holds it: NaN when missing (empty, a marker such as NA), else the number;
    ValueError, with the reason an import gives, when it is no number."""
    text = raw.strip()
    if not text or text.lower() in MISSING_MARKERS:
        return math.nan
    try:
        # float() reads 1_000 and digits of any script (١٢); a CSV writer never means those.
        if "_" in text or not text.isascii():
            raise ValueError
        return float(text)
    except ValueError:
        hint = " (use a decimal point)" if _DECIMAL_COMMA.match(text) else ""
        raise ValueError(f"{VALUE_COLUMN} {quoted(raw)} is not a number{hint}") from None


def missing_value_reason(raw: str, number: float) -> str:
    """Why a row without a value is skipped, in an import's words ("empty value", "NaN", ...)."""
    text = raw.strip()
    if not text:
        return "empty value"
    if math.isnan(number) and text.lower() in MISSING_MARKERS:
        return f"{text} (missing)"
    return "NaN" if math.isnan(number) else "infinite value"


def _to_utc_epochs(
    naive: np.ndarray,
    wall: np.ndarray,
    zone: zoneinfo.ZoneInfo,
    ambiguous: Ambiguous,
    lines: np.ndarray,
    time_text: Callable[[int], str],
    problems: list[RowProblem],
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """UTC epoch seconds of the `wall` rows, naive wall times in `zone` (the others pass through);
    a mask of the rows that exist (a wall time in a spring-forward gap does not) and a mask of
    those left to resolve in a repeated hour."""
    exists = np.ones(len(naive), dtype=bool)
    held = np.zeros(len(naive), dtype=bool)
    if zone.key == "UTC" or not wall.any():
        return naive, exists, held
    import pandas as pd  # only for zones with clock changes: it takes a third of a second to load
    # Rows refused already (no time, out of range) and instants must not trip the conversion.
    stamps = pd.DatetimeIndex(np.where(wall, naive, 0).astype("datetime64[s]"))
    choice = {Ambiguous.EARLIER: True, Ambiguous.LATER: False}.get(ambiguous, "NaT")
    choices = np.full(len(naive), choice) if choice != "NaT" else "NaT"
    localized = stamps.tz_localize(zone.key, ambiguous=choices, nonexistent="NaT")
    epochs = np.where(wall, np.asarray(localized.tz_convert("UTC").as_unit("s").asi8), naive)
    for i in np.flatnonzero(localized.isna() & wall):
        if stamps[i].tz_localize(zone.key, ambiguous=True, nonexistent="NaT") is pd.NaT:
            exists[i] = False
            raw = time_text(i)
            problems.append(
                RowProblem(
                    int(lines[i]), raw, f"time {raw!r} does not exist in {zone.key} (clocks moved forward)", "invalid",
                    Code.TIME_SKIPPED_BY_CLOCK,
                )
            )
        else:
            held[i] = True
    return epochs, exists, held


def resolve_repeated_hours(rows: RepeatedHourRows, zone: zoneinfo.ZoneInfo, report: RowReport) -> ReadingBatch:
    """The held rows of repeated hours, each read in the pass the file's order puts it in: per
    night, the rows before a step back in time are the first pass, those after it the second.
    Where a night's rows show no step (or more than one), the file cannot tell: its rows with a
    value are invalid, naming the fix."""
    if not rows.lines:
        return ReadingBatch(np.empty(0, np.int64), np.empty(0, np.int64), np.empty(0))
    import pandas as pd

    lines, naive, values = (np.concatenate(column) for column in (rows.lines, rows.naive, rows.values))
    texts = [text for chunk in rows.texts for text in chunk]
    first_pass = np.zeros(len(lines), dtype=bool)
    decided = np.zeros(len(lines), dtype=bool)
    nights = naive // 86400
    for night in np.unique(nights):
        rows_of_night = np.flatnonzero(nights == night)  # in file order
        steps_back = np.flatnonzero(np.diff(naive[rows_of_night]) <= 0)
        if len(steps_back) == 1:
            second = steps_back[0] + 1
            first_pass[rows_of_night[:second]] = True
            decided[rows_of_night] = True
    for i in np.flatnonzero(~decided & np.isfinite(values)):
        report.add_problem(RowProblem(
            int(lines[i]), texts[i], _undecided_reason(texts[i], int(naive[i]), zone), "invalid", Code.TIME_AMBIGUOUS,
        ))
    keep = decided & np.isfinite(values)
    stamps = pd.DatetimeIndex(naive[keep].astype("datetime64[s]"))
    epochs = np.asarray(stamps.tz_localize(zone.key, ambiguous=first_pass[keep]).tz_convert("UTC").as_unit("s").asi8)
    batch = ReadingBatch(lines=lines[keep], epochs=epochs.astype(np.int64), values=values[keep])
    _note_order(batch.epochs, report)
    return batch


def _undecided_reason(text: str, naive: int, zone: zoneinfo.ZoneInfo) -> str:
    wall = WALL_EPOCH + timedelta(seconds=naive)
    offsets = [
        wall.replace(tzinfo=zone, fold=fold).strftime("%z") for fold in (0, 1)
    ]
    offsets = [f"{o[:3]}:{o[3:]}" for o in offsets]
    return (
        f"time {text!r} falls in the hour that repeats when clocks go back in {zone.key}, and the file "
        "does not show which pass it belongs to (a step back in time within that hour marks the second): "
        f"give it with its UTC offset ({wall:%Y-%m-%dT%H:%M:%S}{offsets[0]} or {offsets[1]}), "
        "or import with --ambiguous earlier or later"
    )


def _note_order(epochs: np.ndarray, report: RowReport) -> None:
    if not len(epochs):
        return
    first, last = int(epochs[0]), int(epochs[-1])
    if report.strictly_increasing:
        after_previous = report.last_epoch is None or first > report.last_epoch
        report.strictly_increasing = after_previous and bool(np.all(np.diff(epochs) > 0))
    report.last_epoch = last


def clean_rows(
    times: list[str],
    values: list[str],
    *,
    time_zone: str = "UTC",
    ambiguous: Ambiguous = Ambiguous.INFER,
    first_line: int = 1,
    positions: list[int] | None = None,
    unit: str = "reading",
    groups: np.ndarray | None = None,
) -> tuple[ReadingBatch, RowReport]:
    """Rows given as text, as a file would hold them (a write through the API, an MQTT message),
    cleaned by the rules files are cleaned by, with the same reasons. Rows are numbered from
    `first_line` (or by `positions`) and named by `unit` ("line", "reading") in the reasons of
    duplicates. With `groups` (a group number for each position, the positions then 0 to n-1),
    rows of several writes are cleaned at once and duplicates are settled within each group only.

    Unlike a file, the rows are few and all in hand: duplicate times are settled here (a repeat
    of the same value is skipped, different values for one time are both invalid) rather than in
    the store.
    """
    report = RowReport()
    if len(times) != len(values):
        raise ValueError("times and values differ in length")
    chunk = pa.record_batch(
        [pa.array(times, pa.string()), pa.array(values, pa.string())], names=[TIME_COLUMN, VALUE_COLUMN]
    )
    repeated = RepeatedHourRows()
    zone = zoneinfo.ZoneInfo(time_zone)
    numbers = None if positions is None else np.asarray(positions, dtype=np.int64)
    batch = clean_chunk(chunk, first_line, zone, ambiguous, report, repeated, numbers)
    return _settle_rows_in_hand(batch, repeated, zone, report, unit, groups), report


@dataclass
class TypedTimes:
    """Times that came in types (a gRPC write), one per row: epoch seconds (UTC for an instant,
    wall-clock seconds for a naive time), whether each is an instant, how each is quoted in
    reasons, and the reasons of those refused while being read (by row, from 0)."""

    seconds: np.ndarray
    instant: np.ndarray
    texts: list[str]
    refused: dict[int, tuple[Code, str]] = field(default_factory=dict)  # row → (code, reason)

    def __len__(self) -> int:
        return len(self.seconds)

    def take(self, rows: list[int]) -> "TypedTimes":
        at = {row: i for i, row in enumerate(rows)}
        return TypedTimes(
            self.seconds[rows], self.instant[rows], [self.texts[row] for row in rows],
            {at[row]: reason for row, reason in self.refused.items() if row in at},
        )


def clean_typed_rows(
    times: TypedTimes,
    values: np.ndarray,
    *,
    time_zone: str = "UTC",
    ambiguous: Ambiguous = Ambiguous.INFER,
    positions: list[int],
    unit: str = "reading",
    names: np.ndarray | None = None,
) -> tuple[ReadingBatch, RowReport]:
    """Rows whose times and values came in types, cleaned by the rules of `clean_rows` from the
    point where text would have been read; nothing is turned into text to be read again. Reasons
    name rows by `unit` and `names[position]` (the client's own numbers), else by position."""
    report = RowReport()
    lines = np.asarray(positions, dtype=np.int64)
    numbers = np.asarray(values, dtype=np.float64)
    time_ok = np.ones(len(lines), dtype=bool)
    problems = []
    for row, (code, reason) in times.refused.items():
        time_ok[row] = False
        problems.append(RowProblem(int(lines[row]), times.texts[row], reason, "invalid", code))
    parsed = ParsedRows(
        lines, times.seconds.astype(np.int64), times.instant, time_ok, numbers, np.ones(len(lines), dtype=bool),
        lambda i: times.texts[int(i)], lambda i: repr(float(numbers[int(i)])),
    )
    repeated = RepeatedHourRows()
    zone = zoneinfo.ZoneInfo(time_zone)
    batch = _clean_parsed(parsed, problems, zone, ambiguous, report, repeated)
    return _settle_rows_in_hand(batch, repeated, zone, report, unit, None, names), report


def _settle_rows_in_hand(
    batch: ReadingBatch, repeated: RepeatedHourRows, zone: zoneinfo.ZoneInfo, report: RowReport, unit: str,
    groups: np.ndarray | None, names: np.ndarray | None = None,
) -> ReadingBatch:
    """Rows all in hand, past the rules of each row: the repeated hours resolved, duplicates settled."""
    late = resolve_repeated_hours(repeated, zone, report)
    if len(late):
        batch = ReadingBatch(*(np.concatenate(pair) for pair in zip(
            (batch.lines, batch.epochs, batch.values), (late.lines, late.epochs, late.values)
        )))
    batch = _settle_duplicates(batch, report, zone, unit, groups, names)
    report.problems.sort(key=lambda problem: problem.line)
    return batch


def _settle_duplicates(
    batch: ReadingBatch, report: RowReport, zone: zoneinfo.ZoneInfo, unit: str, groups: np.ndarray | None = None,
    names: np.ndarray | None = None,
) -> ReadingBatch:
    """Repeats of a time in rows all in hand: the same value again is skipped, another value makes
    both invalid. Rows are named by `unit` and their number (`names[line]`, else the line)."""
    if len(batch) < 2:
        return batch
    group = np.zeros(len(batch), dtype=np.int64) if groups is None else groups[batch.lines]
    order = np.lexsort((batch.lines, batch.epochs, group))
    epochs, group = batch.epochs[order], group[order]
    repeats = np.flatnonzero((np.diff(epochs) == 0) & (np.diff(group) == 0)) + 1
    if not len(repeats):
        return batch
    lines, values = batch.lines[order], batch.values[order]
    name = (lambda line: int(line)) if names is None else (lambda line: int(names[line]))  # noqa: E731
    drop = np.zeros(len(order), dtype=bool)
    first = np.arange(len(order))
    for i in repeats:
        first[i] = first[i - 1]
        head = first[i]
        drop[i] = True
        if values[i] == values[head]:
            report.add_problem(RowProblem(
                int(lines[i]), repr(float(values[i])), f"duplicate of {unit} {name(lines[head])}", "skipped", Code.DUPLICATE_ROW,
            ))
        else:
            local = datetime.fromtimestamp(int(epochs[i]), UTC).astimezone(zone)
            report.add_problem(RowProblem(
                int(lines[i]), repr(float(values[i])),
                f"{unit}s {name(lines[head])} and {name(lines[i])} both give time {local:%Y-%m-%d %H:%M:%S} "
                f"with different values ({float(values[head])!r} and {float(values[i])!r})",
                "invalid", Code.CONFLICTING_VALUES,
            ))
    keep = np.sort(order[~drop])
    return ReadingBatch(batch.lines[keep], batch.epochs[keep], batch.values[keep])
