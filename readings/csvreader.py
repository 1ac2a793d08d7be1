"""Reading meter CSV files (`time,meterusage`) into clean, UTC, columnar batches.

One reader serves every consumer of files (the SQL import, the InfluxDB seed, the CSV source), and
it cleans rows by the rules every writer uses (`readings.writes.rows`), so a file is cleaned the same
way wherever it goes. Files stream in blocks through pyarrow's CSV reader, which keeps memory flat
for files of any length; pandas' own pyarrow engine cannot stream.
"""
import codecs
import csv
import re
import zoneinfo
from collections.abc import Callable, Iterator
from pathlib import Path

import pyarrow as pa
import pyarrow.csv as pa_csv

from readings.domain import quoted
from readings.writes.rows import (
    TIME_COLUMN,
    VALUE_COLUMN,
    Ambiguous,
    ReadingBatch,
    RepeatedHourRows,
    RowReport,
    clean_chunk,
    resolve_repeated_hours,
)

DEFAULT_BATCH_SIZE = 100_000
READ_BLOCK_BYTES = 1 << 20
_BINARY_SNIFF_BYTES = 64 * 1024


class CsvError(ValueError):
    """A file that cannot be read as meter readings; names the file and, where known, the line."""

    def __init__(self, path: Path | str, message: str, *, line: int | None = None):
        self.path = str(path)
        self.line = line
        self.message = message
        where = f"{self.path}: line {line}" if line is not None else self.path
        super().__init__(f"{where}: {message}")


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
    return header_columns(first_line, path)


def header_columns(first_line: str, source: Path | str) -> list[str]:
    """The column names of a header line (of a file, or of CSV text sent to the API)."""
    names = next(csv.reader([first_line]), [])
    columns = [name.strip().lower() for name in names]
    if TIME_COLUMN not in columns or VALUE_COLUMN not in columns:
        raise CsvError(
            source,
            f"expected the header '{TIME_COLUMN},{VALUE_COLUMN}', found {quoted(first_line.strip())}",
            line=1,
        )
    for name in (TIME_COLUMN, VALUE_COLUMN):
        if columns.count(name) > 1:
            raise CsvError(source, f"the header names the column {name!r} twice", line=1)
    return columns


def read_readings(
    path: Path | str,
    *,
    time_zone: str = "UTC",
    ambiguous: Ambiguous = Ambiguous.INFER,
    report: RowReport | None = None,
    batch_size: int = DEFAULT_BATCH_SIZE,
    on_progress: Callable[[int, int], None] | None = None,
) -> Iterator[ReadingBatch]:
    """Yield the file's clean readings in batches of at most `batch_size` rows.

    Rows without a value (empty, NaN, infinite) are skipped and invalid rows are recorded in
    `report`; a row with the wrong number of fields, or a file that is not CSV text, raises
    CsvError. Times with a UTC offset are instants; naive times are read in `time_zone`, those of
    an hour that repeats when clocks go back as `ambiguous` says (read last, once the whole file
    has shown their order). Times are returned as UTC epoch seconds.
    """
    report = RowReport() if report is None else report
    path = Path(path)
    check_is_file(path)
    check_is_text(path)
    columns = read_header(path)
    zone = zoneinfo.ZoneInfo(time_zone)
    repeated = RepeatedHourRows()
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
            # A row that does not parse fails the file, whatever the rest holds: rows the reader
            # set aside while opening or reading count as much as those of a later block.
            if malformed:
                raise _malformed_row_error(path, malformed[0])
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
                batch = clean_chunk(chunk, next_line, zone, ambiguous, report, repeated)
                next_line += chunk.num_rows
                if len(batch):
                    yield batch
            if on_progress is not None:
                on_progress(min(source.tell(), bytes_total), bytes_total)
        if malformed:
            raise _malformed_row_error(path, malformed[0])
        batch = resolve_repeated_hours(repeated, zone, report)
        if len(batch):
            yield batch
        report.problems.sort(key=lambda problem: problem.line)
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
