"""Reading meter CSV files (`time,meterusage`) into clean, UTC, columnar batches.

One reader serves every consumer (the SQL import, the InfluxDB seed, the CSV source), so a file
is cleaned the same way wherever it goes. Files stream in blocks through pyarrow's CSV reader,
which keeps memory flat for files of any length; pandas' own pyarrow engine cannot stream.
"""
import codecs
import csv
import math
import re
import zoneinfo
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pa_csv

from readings.domain import MAX_EPOCH, MIN_EPOCH, SPAN_TEXT

TIME_COLUMN = "time"
VALUE_COLUMN = "meterusage"
DEFAULT_BATCH_SIZE = 100_000
READ_BLOCK_BYTES = 1 << 20
PROBLEMS_KEPT = 1000
# Markers of a missing value, beside the empty string and what float() reads as NaN or infinite.
MISSING_MARKERS = frozenset({"na", "n/a", "null", "none"})
_DECIMAL_COMMA = re.compile(r"^[+-]?\d+,\d+$")
_BINARY_SNIFF_BYTES = 64 * 1024


class CsvError(ValueError):
    """A file that cannot be read as meter readings; names the file and, where known, the line."""

    def __init__(self, path: Path | str, message: str, *, line: int | None = None):
        self.path = str(path)
        self.line = line
        self.message = message
        where = f"{self.path}: line {line}" if line is not None else self.path
        super().__init__(f"{where}: {message}")


@dataclass(frozen=True)
class RowProblem:
    """A data row set aside: `skipped` rows carry no value, `invalid` rows fail the import."""

    line: int
    value: str
    reason: str
    kind: str  # "skipped" or "invalid"

    def as_dict(self) -> dict:
        return {"line": self.line, "value": self.value, "reason": self.reason, "kind": self.kind}


@dataclass
class CsvReport:
    """What a read found, filled in as batches are consumed."""

    rows_read: int = 0
    rows_skipped: int = 0
    rows_invalid: int = 0
    problems: list[RowProblem] = field(default_factory=list)
    # True while every time seen is later than the one before: no duplicates are possible then.
    strictly_increasing: bool = True
    last_epoch: int | None = None
    min_epoch: int | None = None
    max_epoch: int | None = None

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


def check_is_file(path: Path) -> None:
    """Raise CsvError unless `path` is a regular file."""
    if not path.exists():
        raise CsvError(path, "no such file")
    if path.is_dir():
        raise CsvError(path, "is a directory, not a CSV file")
    if not path.is_file():
        raise CsvError(path, "is not a regular file")


def check_is_text(path: Path) -> None:
    """Raise CsvError unless the file is non-empty and its start looks like UTF-8 text."""
    with path.open("rb") as f:
        head = f.read(_BINARY_SNIFF_BYTES)
    if not head:
        raise CsvError(path, "the file is empty; expected the header 'time,meterusage'")
    nul = head.find(b"\x00")
    if nul >= 0:
        raise CsvError(path, f"is not a text CSV file (binary data at byte {nul})")
    decoder = codecs.getincrementaldecoder("utf-8")()
    try:
        decoder.decode(head, final=False)
    except UnicodeDecodeError as exc:
        raise CsvError(path, f"is not UTF-8 text (invalid byte at offset {exc.start})") from None


def read_header(path: Path) -> list[str]:
    """The file's column names, stripped and lower-cased; checks that both columns are there."""
    with path.open(encoding="utf-8-sig", newline="") as f:
        first_line = f.readline()
    names = next(csv.reader([first_line]), [])
    columns = [name.strip().lower() for name in names]
    if TIME_COLUMN not in columns or VALUE_COLUMN not in columns:
        found = first_line.strip()
        raise CsvError(
            path,
            f"expected the header '{TIME_COLUMN},{VALUE_COLUMN}', found {found!r}",
            line=1,
        )
    for name in (TIME_COLUMN, VALUE_COLUMN):
        if columns.count(name) > 1:
            raise CsvError(path, f"the header names the column {name!r} twice", line=1)
    return columns


def read_readings(
    path: Path | str,
    *,
    time_zone: str = "UTC",
    report: CsvReport | None = None,
    batch_size: int = DEFAULT_BATCH_SIZE,
    on_progress: Callable[[int, int], None] | None = None,
) -> Iterator[ReadingBatch]:
    """Yield the file's clean readings in batches of at most `batch_size` rows.

    Rows without a value (empty, NaN, infinite) are skipped and invalid rows are recorded in
    `report`; a row with the wrong number of fields, or a file that is not CSV text, raises CsvError.
    Naive times are read in `time_zone` and returned as UTC epoch seconds.
    """
    report = CsvReport() if report is None else report
    # Wall times seen once in a DST fall-back hour: their second occurrence is standard time.
    ambiguous_seen: set[int] = set()
    path = Path(path)
    check_is_file(path)
    check_is_text(path)
    columns = read_header(path)
    zone = zoneinfo.ZoneInfo(time_zone)
    bytes_total = path.stat().st_size
    malformed: list[tuple[int | None, int, int, str]] = []

    def on_invalid_row(row) -> str:
        malformed.append((row.number, row.expected_columns, row.actual_columns, row.text))
        return "skip"

    source = pa.OSFile(str(path))
    try:
        reader = pa_csv.open_csv(
            source,
            read_options=pa_csv.ReadOptions(
                skip_rows=1,
                column_names=columns,
                use_threads=False,
                # Blocks of 1 MiB (~40,000 rows): the reader reads a few dozen ahead, so this is
                # what bounds memory, whatever the file's length.
                block_size=READ_BLOCK_BYTES,
            ),
            # Blank lines stay rows, so that row number and file line keep in step.
            parse_options=pa_csv.ParseOptions(
                ignore_empty_lines=False, invalid_row_handler=on_invalid_row
            ),
            convert_options=pa_csv.ConvertOptions(
                include_columns=[TIME_COLUMN, VALUE_COLUMN],
                column_types={TIME_COLUMN: pa.string(), VALUE_COLUMN: pa.string()},
                strings_can_be_null=False,
                quoted_strings_can_be_null=False,
            ),
        )
    except pa.ArrowInvalid as exc:  # the reader parses its first block as it opens
        source.close()
        raise CsvError(path, _arrow_message(exc)) from None
    next_line = 2
    try:
        while True:
            try:
                record_batch = reader.read_next_batch()
            except StopIteration:
                break
            except pa.ArrowInvalid as exc:
                raise CsvError(path, _arrow_message(exc)) from None
            if malformed:
                raise _malformed_row_error(path, malformed[0])
            for start in range(0, record_batch.num_rows, batch_size):
                chunk = record_batch.slice(start, batch_size)
                batch = _clean(chunk, next_line, zone, report, ambiguous_seen)
                next_line += chunk.num_rows
                if len(batch):
                    yield batch
            if on_progress is not None:
                on_progress(min(source.tell(), bytes_total), bytes_total)
    finally:
        source.close()


def _arrow_message(exc: Exception) -> str:
    text = str(exc)
    if "UTF8" in text or "UTF-8" in text:
        return "is not UTF-8 text"
    return f"cannot be read as CSV: {text}"


def _malformed_row_error(path: Path, row: tuple[int | None, int, int, str]) -> CsvError:
    line, expected, actual, text = row
    hint = ""
    if actual == expected + 1 and re.search(r"\d,\d+\s*$", text or ""):
        hint = " (a decimal comma? values need a decimal point)"
    return CsvError(
        path, f"expected {expected} fields, found {actual}: {text!r}{hint}", line=line
    )


def _clean(
    chunk: pa.RecordBatch, first_line: int, zone: zoneinfo.ZoneInfo, report: CsvReport, ambiguous_seen: set[int]
) -> ReadingBatch:
    times = chunk.column(TIME_COLUMN)
    values = chunk.column(VALUE_COLUMN)
    lines = np.arange(first_line, first_line + chunk.num_rows, dtype=np.int64)

    # A blank line is no row at all.
    blank = pc.and_(pc.equal(times, ""), pc.equal(values, "")).to_numpy(zero_copy_only=False)
    if blank.any():
        keep = ~blank
        times = times.filter(pa.array(keep))
        values = values.filter(pa.array(keep))
        lines = lines[keep]
    report.rows_read += len(lines)

    naive, time_ok = _parse_times(times, lines, report)
    time_ok &= _within_supported_years(naive, time_ok, lines, times, report)
    # Every row with a time goes through localization, those without a value too: a fall-back
    # hour's first pass is what tells its second pass apart.
    epochs, local_ok = _to_utc_epochs(naive, time_ok, zone, lines, times, report, ambiguous_seen)
    numbers, value_ok = _parse_values(values, lines, report)
    ok = time_ok & local_ok & value_ok

    has_value = np.isfinite(numbers)
    for i in np.flatnonzero(ok & ~has_value):
        raw = values[i].as_py()
        report.add_problem(RowProblem(int(lines[i]), raw, _missing_reason(raw, numbers[i]), "skipped"))
    ok &= has_value

    batch = ReadingBatch(lines=lines[ok], epochs=epochs[ok], values=numbers[ok])
    _note_order(batch.epochs, report)
    return batch


def _parse_times(times: pa.Array, lines: np.ndarray, report: CsvReport) -> tuple[np.ndarray, np.ndarray]:
    """Naive times as int64 seconds, and a mask of the rows whose time parsed."""
    try:
        # Arrow's ISO 8601 cast is strict (no Feb 30, no offsets) and fast: the common case.
        seconds = pc.cast(times, pa.timestamp("s")).cast(pa.int64()).to_numpy(zero_copy_only=False)
        return seconds, np.ones(len(seconds), dtype=bool)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        pass
    seconds = np.zeros(len(times), dtype=np.int64)
    ok = np.ones(len(times), dtype=bool)
    for i, raw in enumerate(times.to_pylist()):
        parsed, reason = _parse_time_text(raw)
        if parsed is None:
            ok[i] = False
            report.add_problem(RowProblem(int(lines[i]), raw, reason, "invalid"))
        else:
            seconds[i] = parsed
    return seconds, ok


_EPOCH = datetime(1970, 1, 1)


def _within_supported_years(
    naive: np.ndarray, time_ok: np.ndarray, lines: np.ndarray, times: pa.Array, report: CsvReport
) -> np.ndarray:
    """Times the service can serve (years 1 to 9999, a day's margin for any zone's offset)."""
    inside = (naive >= MIN_EPOCH) & (naive <= MAX_EPOCH)
    for i in np.flatnonzero(time_ok & ~inside):
        raw = times[i].as_py()
        report.add_problem(
            RowProblem(int(lines[i]), raw, f"time {raw!r} is outside {SPAN_TEXT}", "invalid")
        )
    return inside


def _parse_time_text(raw: str) -> tuple[int | None, str]:
    text = raw.strip()
    if not text:
        return None, "time is empty"
    if "\n" in text or "\r" in text:
        return None, f"time {raw!r} holds a line break"
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        return None, f"time {raw!r} is not a timestamp like 2019-01-01 00:15:00"
    if parsed.tzinfo is not None:
        return None, (
            f"time {raw!r} carries a UTC offset; times must be naive local times "
            "(give the zone with --tz)"
        )
    if parsed.microsecond:
        return None, f"time {raw!r} has fractional seconds; whole seconds are expected"
    return int((parsed - _EPOCH).total_seconds()), ""


def _parse_values(values: pa.Array, lines: np.ndarray, report: CsvReport) -> tuple[np.ndarray, np.ndarray]:
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
        text = raw.strip()
        if not text or text.lower() in MISSING_MARKERS:
            continue
        try:
            if "_" in text:  # float() reads 1_000, a CSV writer never means that
                raise ValueError
            numbers[i] = float(text)
        except ValueError:
            ok[i] = False
            hint = " (use a decimal point)" if _DECIMAL_COMMA.match(text) else ""
            report.add_problem(
                RowProblem(int(lines[i]), raw, f"{VALUE_COLUMN} {raw!r} is not a number{hint}", "invalid")
            )
    return numbers, ok


def _missing_reason(raw: str, number: float) -> str:
    text = raw.strip()
    if not text:
        return "empty value"
    if math.isnan(number) and text.lower() in MISSING_MARKERS:
        return f"{text} (missing)"
    return "NaN" if math.isnan(number) else "infinite value"


def _to_utc_epochs(
    naive: np.ndarray,
    ok: np.ndarray,
    zone: zoneinfo.ZoneInfo,
    lines: np.ndarray,
    times: pa.Array,
    report: CsvReport,
    ambiguous_seen: set[int],
) -> tuple[np.ndarray, np.ndarray]:
    """UTC epoch seconds for naive wall times in `zone`; DST gaps are invalid rows."""
    local_ok = np.ones(len(naive), dtype=bool)
    if zone.key == "UTC" or not len(naive):
        return naive, local_ok
    # Rows already refused (no time, or out of range) must not trip the zone conversion.
    naive = np.where(ok, naive, 0)
    wall = pd.DatetimeIndex(naive.astype("datetime64[s]"))
    localized = wall.tz_localize(zone.key, ambiguous="NaT", nonexistent="NaT")
    epochs = np.asarray(localized.tz_convert("UTC").as_unit("s").asi8).copy()
    for i in np.flatnonzero(localized.isna() & ok):
        stamp = wall[i]
        as_dst = stamp.tz_localize(zone.key, ambiguous=True, nonexistent="NaT")
        if as_dst is pd.NaT:
            local_ok[i] = False
            report.add_problem(
                RowProblem(
                    int(lines[i]),
                    times[i].as_py(),
                    f"time {times[i].as_py()!r} does not exist in {zone.key} (clocks moved forward)",
                    "invalid",
                )
            )
            continue
        # A fall-back hour happens twice: its first occurrence in the file is summer time.
        second_time = int(naive[i]) in ambiguous_seen
        ambiguous_seen.add(int(naive[i]))
        chosen = stamp.tz_localize(zone.key, ambiguous=not second_time)
        epochs[i] = int(chosen.timestamp())
    return epochs, local_ok


def _note_order(epochs: np.ndarray, report: CsvReport) -> None:
    if not len(epochs):
        return
    first, last = int(epochs[0]), int(epochs[-1])
    if report.strictly_increasing:
        after_previous = report.last_epoch is None or first > report.last_epoch
        report.strictly_increasing = after_previous and bool(np.all(np.diff(epochs) > 0))
    low, high = int(epochs.min()), int(epochs.max())
    report.min_epoch = low if report.min_epoch is None else min(report.min_epoch, low)
    report.max_epoch = high if report.max_epoch is None else max(report.max_epoch, high)
    report.last_epoch = last
