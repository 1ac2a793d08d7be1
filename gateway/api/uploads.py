"""Readings sent to the HTTP API (a CSV file or JSON), written through the gRPC service
(WriteReadings) with the gateway's write token.

The gateway reads the body's structure (header, fields, JSON shape) and puts each row in the
contract's types: the value as a number, the time as an instant (it carried a UTC offset) or a
wall time in the meter's zone, each read by the rules every writer uses; the service cleans the
rows by the rules of a file import from there. A CSV row is named by its line in the file, a JSON
reading by its index in the list, and the service's reasons are put in those terms, so that a file
gets the reasons `import_readings` gives it.
"""
import csv
import io
import math
from dataclasses import dataclass, field
from datetime import timedelta

from google.type import datetime_pb2

from gateway import client
from gateway.api.problems import Problem, summary_of
from gateway.api.serializers import RejectedReadingDocument, WriteResultDocument
from gateway.client import RpcFailed
from grpc_api.convert import timestamp
from grpc_api.gen.meterusage.v1 import meter_usage_pb2 as pb
from readings.csvreader import CsvError, header_columns
from readings.writes.rows import (
    TIME_COLUMN,
    VALUE_COLUMN,
    WALL_EPOCH,
    TimeRead,
    missing_value_reason,
    number_of_text,
    parse_time_text,
)

CSV_BODY = "the CSV body"
WRITE_COUNTS = ("inserted", "updated", "unchanged", "skipped")
QUOTED_CHARACTERS = 40
SENT_INTEGERS = range(-(2**63), 2**64)


@dataclass
class RowsSent:
    """Rows of one meter as sent: `numbers` name them (file lines, or list indexes),
    `sent` are the values as sent (`texts` as text), `invalid` the reasons of rows whose time or
    value cannot be read, by position."""

    unit: str  # "line" or "index"
    numbers: list[int] = field(default_factory=list)
    times: list[str] = field(default_factory=list)
    times_read: list[TimeRead] = field(default_factory=list)
    sent: list = field(default_factory=list)
    texts: list[str] = field(default_factory=list)
    values: list[float] = field(default_factory=list)
    invalid: dict[int, str] = field(default_factory=dict)  # position in the rows → reason

    def add(self, number: int, time: str, value) -> None:
        read = parse_time_text(time)
        if read.seconds is None:  # read by the grammar every writer uses, reason and all
            self.invalid[len(self.numbers)] = read.reason
        text = "" if value is None else value if isinstance(value, str) else _number_text(value)
        try:
            if isinstance(value, bool):  # JSON true is no reading
                raise ValueError(f"{VALUE_COLUMN} {value!r} is not a number")
            # An integer is read as its text is in a file: one past a float's range is infinite.
            number_value = float(value) if isinstance(value, float) else number_of_text(text)
        except ValueError as exc:
            self.invalid.setdefault(len(self.numbers), str(exc))
            number_value = math.nan
        self.numbers.append(number)
        self.times.append(time)
        self.times_read.append(read)
        # Answers are written with orjson, which writes integers of 64 bits at most: a larger one
        # is given back as its text.
        self.sent.append(text if isinstance(value, int) and value not in SENT_INTEGERS else value)
        self.texts.append(text)
        self.values.append(number_value)

    def __len__(self) -> int:
        return len(self.numbers)


def reading_time(read: TimeRead) -> dict:
    """A time read from a body, in the contract's types: an instant where it carried a UTC
    offset, else a wall time in the meter's zone (the service knows the zone and reads it there)."""
    if read.instant:
        return {"time": timestamp(read.seconds)}
    wall = WALL_EPOCH + timedelta(seconds=read.seconds)
    return {"wall_time": datetime_pb2.DateTime(
        year=wall.year, month=wall.month, day=wall.day, hours=wall.hour, minutes=wall.minute, seconds=wall.second,
    )}


def _number_text(value) -> str:
    return repr(value) if isinstance(value, float) else str(value)


# Rows a refusal lists (the count says how many there were in all), and names in its detail.
ROWS_LISTED = 20
ROWS_IN_DETAIL = 5


def rows_refused(errors: list[dict], count: int | None = None) -> Problem:
    """A 400 naming the first rows the service refused (or the gateway found no number in), and
    how many there were (`count`, when more than are listed)."""
    count = max(count or 0, len(errors))
    noun = "row" if count == 1 else "rows"
    detail = f"{count} invalid {noun}, nothing written: {summary_of(errors[:ROWS_IN_DETAIL])}"
    if count > ROWS_IN_DETAIL:
        detail += f"; and {count - ROWS_IN_DETAIL} more"
    return Problem(400, detail, errors=errors[:ROWS_LISTED], invalid_count=count)


def csv_rows(text: str) -> RowsSent:
    """Rows of CSV text with the header `time,meterusage` (other columns are ignored, blank lines
    are no rows), numbered by their line in the file; CsvError for a file an import refuses whole."""
    if not text.strip("\ufeff"):
        raise CsvError(CSV_BODY, "the file is empty; expected the header 'time,meterusage'")
    if "\x00" in text:
        raise CsvError(CSV_BODY, f"is not a text CSV file (binary data at character {text.index(chr(0))})")
    text = text.removeprefix("\ufeff")
    rows = RowsSent("line")
    reader = csv.reader(io.StringIO(text, newline=""), strict=True)
    try:
        columns = header_columns(text.split("\n", 1)[0], CSV_BODY)
        time_at, value_at = columns.index(TIME_COLUMN), columns.index(VALUE_COLUMN)
        next(reader)
        # Lines are counted as rows after the header, as an import counts them.
        for line, fields in enumerate(reader, start=2):
            if not fields:
                continue
            if len(fields) != len(columns):
                raise CsvError(
                    CSV_BODY, f"expected {len(columns)} fields, found {len(fields)}: {','.join(fields)[:40]!r}", line=line
                )
            time, value = fields[time_at], fields[value_at]
            if time == "" and value == "":
                continue
            rows.add(line, time, value)
    except csv.Error as exc:
        raise CsvError(CSV_BODY, _csv_reason(exc), line=max(reader.line_num, 1)) from None
    return rows


def _csv_reason(error: csv.Error) -> str:
    """What the csv module found wrong, in the words of the API."""
    message = str(error)
    if message.startswith("new-line character seen in unquoted field"):
        return "a line ends with a carriage return alone; end lines with LF or CRLF"
    if message.startswith("field larger than field limit"):
        return f"a field is longer than {csv.field_size_limit():,} characters"
    if message.startswith("unexpected end of data"):
        return "a quoted field is not closed"
    return "the line is not CSV a file import can read"


def json_rows(readings: list[dict]) -> RowsSent:
    """Readings of a JSON body (checked by its serializer), numbered by their index."""
    rows = RowsSent("index")
    for index, reading in enumerate(readings):
        rows.add(index, reading["time"], reading["value"])
    return rows


def readings_write(*, meter: str, rows: RowsSent) -> dict:
    """Write `rows` into `meter` through WriteReadings; the counts and the rows set aside.

    Raises a 400 Problem (nothing written) when a row is invalid, RpcFailed for other failures.
    """
    if not len(rows):
        # A request without readings names no meter: the path's meter must still be one.
        client.call("GetMeter", pb.GetMeterRequest(name=meter))
    # A file's rows are named by their lines in the service's reasons; JSON readings by their
    # index, which is their index in the request too.
    by_line = rows.unit == "line"
    request = pb.WriteReadingsRequest(row_unit="line" if by_line else "", readings=[
        # A row whose time or value is none goes without a time: the service refuses the write
        # for it (nothing is written) and still names every other invalid row.
        pb.ReadingInput(
            meter=meter, value=value, row_number=number if by_line else 0,
            **({} if i in rows.invalid else reading_time(read)),
        )
        for i, (number, read, value) in enumerate(zip(rows.numbers, rows.times_read, rows.values))
    ])
    try:
        response = client.call("WriteReadings", request)
    except RpcFailed as failed:
        refused = _refused_rows(failed, rows)
        if refused:
            raise rows_refused(refused, failed.violation_count) from None
        raise
    return WriteResultDocument.build(
        # Each count of the document is the service's <name>_count.
        **{name: getattr(response, f"{name}_count") for name in WRITE_COUNTS},
        rejected=[
            RejectedReadingDocument.build(
                **{rows.unit: rows.numbers[s.index]}, value=rows.sent[s.index], reason=_skip_reason(s, rows),
            )
            for s in response.skipped
        ],
    )


def _skip_reason(skipped: pb.RejectedReading, rows: RowsSent) -> str:
    value = rows.values[skipped.index]
    if not math.isfinite(value):  # a missing value: named as the text sent ("empty value", "NA (missing)")
        return missing_value_reason(rows.texts[skipped.index], value)
    return skipped.reason


def _refused_rows(failed: RpcFailed, rows: RowsSent) -> list[dict]:
    """The rows a refused write names (the service's reasons already name rows as the body
    does), with the gateway's own reasons for rows it could not read."""
    reasons = {refused.index: refused.description for refused in failed.refused if refused.index < len(rows)}
    if not reasons:
        return []  # not refused for its rows (too many of them, the meter): the failure as it is
    reasons.update(rows.invalid)
    return [row_error(rows, i, reason) for i, reason in sorted(reasons.items())]


def row_error(rows: RowsSent, position: int, reason: str) -> dict:
    number = rows.numbers[position]
    name = f"line {number}" if rows.unit == "line" else f"readings[{number}]"
    sent = rows.sent[position]
    # The value as sent, cut short: a refusal quotes the input, it does not return it.
    value = sent[:QUOTED_CHARACTERS] if isinstance(sent, str) else sent
    return {"field": name, "description": reason, rows.unit: number, "value": value, "reason": reason}
