"""One strict grammar for a reading's time and value, the same for every reader: a file's rows
(read a column at a time or row by row), MQTT messages and the HTTP write (row by row)."""
from io import StringIO

import pytest
from django.core.management import CommandError, call_command

from readings.models import Reading
from readings.writes.rows import Code, clean_rows, number_of_text, parse_time_text

pytestmark = pytest.mark.django_db

MARCH_1 = 1709251200  # 2024-03-01T00:00:00Z


@pytest.mark.parametrize(
    ("text", "seconds", "instant"),
    [
        ("2024-03-01 00:00:00", MARCH_1, False),
        ("2024-03-01T00:00:00", MARCH_1, False),
        ("2024-03-01 00:00", MARCH_1, False),
        ("2024-03-01", MARCH_1, False),
        ("  2024-03-01 00:00:00 ", MARCH_1, False),
        ("2024-03-01T00:00:00Z", MARCH_1, True),
        ("2024-03-01t00:00:00z", MARCH_1, True),  # RFC 3339 section 5.6 allows lowercase
        ("2024-03-01T01:00:00+01:00", MARCH_1, True),
        ("2024-02-29T19:00:00-05:00", MARCH_1, True),
    ],
)
def test_the_grammar_reads(text, seconds, instant):
    assert parse_time_text(text)[:2] == (seconds, instant)


@pytest.mark.parametrize(
    ("text", "code"),
    [
        ("2024-03-01X00:00:00Z", Code.TIME_NOT_A_TIME),
        ("2024-03-01\x0000:00:00", Code.TIME_NOT_A_TIME),
        ("2024-03-01 00:00:00.000", Code.TIME_FRACTIONAL),
        ("2024-03-01 00:00:00.5", Code.TIME_FRACTIONAL),
        ("2024-03-01 00", Code.TIME_NOT_A_TIME),
        ("20240301T000000", Code.TIME_NOT_A_TIME),
        ("2024-03-01Z", Code.TIME_NOT_A_TIME),
        ("2024-03-01T00:00:00+0100", Code.TIME_NOT_A_TIME),
        ("٢٠٢٤-03-01 00:00:00", Code.TIME_NOT_A_TIME),
        ("2024-02-30 00:00:00", Code.TIME_NOT_A_TIME),
        ("2024-03-01 24:00:00", Code.TIME_NOT_A_TIME),
        ("", Code.TIME_EMPTY),
    ],
)
def test_the_grammar_refuses(text, code):
    read = parse_time_text(text)

    assert read.seconds is None
    assert read.code is code


@pytest.mark.parametrize("text", ["١٢", "12\u0663", "1_000", "1,5"])
def test_a_value_is_ascii_digits_with_a_decimal_point(text):
    with pytest.raises(ValueError, match="is not a number"):
        number_of_text(text)


@pytest.mark.parametrize(
    ("time", "value"),
    [
        ("2024-03-01X00:00:00Z", "1"),
        ("2024-03-01\x0000:00:00", "1"),
        ("2024-03-01 00:00:00.000", "1"),
        ("2024-03-01 00:15:00", "١٢"),
    ],
    ids=["X as separator", "NUL as separator", "zero fraction", "Arabic-Indic digits"],
)
def test_rows_clean_the_same_alone_and_among_good_rows(time, value):
    good = [("2024-03-01 00:30:00", "2"), ("2024-03-01 00:45:00", "3")]
    for rows in ([(time, value)], [*good, (time, value)]):
        _batch, report = clean_rows([t for t, _ in rows], [v for _, v in rows])
        assert report.rows_invalid == 1, rows


def test_a_file_with_odd_times_is_refused_naming_each_line(tmp_path):
    path = tmp_path / "odd.csv"
    path.write_text(
        "time,meterusage\n2024-03-01 00:00:00,1\n2024-03-01X00:15:00Z,2\n2024-03-01 00:30:00.000,3\n"
        "2024-03-01t00:45:00z,4\n2024-03-01 01:00:00,\u0661\u0662\n"
    )

    with pytest.raises(CommandError) as raised:
        call_command("import_readings", str(path), stdout=StringIO(), stderr=StringIO())

    message = str(raised.value)
    assert "line 3" in message and "line 4" in message and "line 6" in message
    assert "line 5" not in message
    assert not Reading.objects.exists()


def test_a_file_in_rfc_3339_lowercase_is_read(tmp_path):
    path = tmp_path / "lower.csv"
    path.write_text("time,meterusage\n2024-03-01t00:00:00z,1\n2024-03-01t00:15:00z,2\n")

    call_command("import_readings", str(path), stdout=StringIO(), stderr=StringIO())

    assert Reading.objects.count() == 2
