"""The HTTP write puts times in the contract's types, read by the grammar every writer uses."""
import pytest
from google.protobuf import timestamp_pb2
from google.type import datetime_pb2

from gateway.api.uploads import csv_rows, reading_time
from readings.writes.rows import parse_time_text


def wall(year, month, day, hours=0, minutes=0, seconds=0) -> datetime_pb2.DateTime:
    return datetime_pb2.DateTime(year=year, month=month, day=day, hours=hours, minutes=minutes, seconds=seconds)


@pytest.mark.parametrize(
    ("text", "typed"),
    [
        ("2019-01-01T00:15:00Z", {"time": timestamp_pb2.Timestamp(seconds=1546301700)}),
        ("2019-01-01 01:15:00+01:00", {"time": timestamp_pb2.Timestamp(seconds=1546301700)}),
        ("2019-01-01 00:15:00", {"wall_time": wall(2019, 1, 1, 0, 15)}),
        ("2019-01-01", {"wall_time": wall(2019, 1, 1)}),
    ],
)
def test_the_gateway_sends_times_in_types(text, typed):
    assert reading_time(parse_time_text(text)) == typed


def test_a_time_no_grammar_reads_is_refused_by_the_gateway_with_a_files_reason():
    rows = csv_rows("time,meterusage\n2019-01-01 00:15:00,1\nyesterday,2\n2019-01-01 00:45:00,x\n")

    assert rows.invalid == {
        1: "time 'yesterday' is not a timestamp like 2019-01-01 00:15:00",
        2: "meterusage 'x' is not a number",
    }
