"""A corpus of awkward files: each is imported correctly or rejected naming file, line and value."""
from datetime import UTC, datetime

import pytest
from django.core.management import CommandError

from readings.models import ImportRun, Meter, Reading
from readings.sources.sql import upsert
from testing.helpers import HEADER, import_file

pytestmark = [pytest.mark.django_db, pytest.mark.store]



def stored() -> list[tuple[datetime, float]]:
    return list(Reading.objects.order_by("time").values_list("time", "value"))


def utc(*args) -> datetime:
    return datetime(*args, tzinfo=UTC)


@pytest.fixture
def existing_meter(write_csv):
    """A store that already holds readings, to show that a rejected file leaves it as it was."""
    import_file(write_csv(HEADER + "2018-12-31 23:45:00,1.0\n", "meter.csv"))
    return stored()


REJECTED = [
    ("wrong header", "date,value\n2019-01-01 00:15:00,1\n",
     "line 1: expected the header 'time,meterusage', found 'date,value'"),
    ("bad timestamp", HEADER + "2019-01-01 00:15:00,1\n2019-13-01 00:00:00,2\n",
     "line 3: time '2019-13-01 00:00:00' is not a timestamp like 2019-01-01 00:15:00"),
    ("impossible date", HEADER + "2019-02-30 00:00:00,2\n",
     "line 2: time '2019-02-30 00:00:00' is not a timestamp"),
    ("bad number", HEADER + "2019-01-01 00:15:00,abc\n",
     "line 2: meterusage 'abc' is not a number"),
    ("decimal comma, quoted", HEADER + '2019-01-01 00:15:00,"55,09"\n',
     "line 2: meterusage '55,09' is not a number (use a decimal point)"),
    ("decimal comma, unquoted", HEADER + "2019-01-01 00:15:00,1.0\n2019-01-01 00:30:00,55,09\n",
     "line 3: expected 2 fields, found 3: '2019-01-01 00:30:00,55,09' (a decimal comma?"),
    ("every row with an extra field", HEADER + "2019-01-01 00:15:00,55,09\n2019-01-01 00:30:00,54,64\n",
     "line 2: expected 2 fields, found 3: '2019-01-01 00:15:00,55,09' (a decimal comma?"),
    ("the only row with an extra field", HEADER + "2019-01-01 00:15:00,55,09\n",
     "line 2: expected 2 fields, found 3"),
    ("fractional seconds", HEADER + "2019-01-01 00:15:00.5,1\n",
     "line 2: time '2019-01-01 00:15:00.5' has fractional seconds"),
    ("empty time", HEADER + ",1\n", "line 2: time is empty"),
    ("conflicting duplicate", HEADER + "2019-01-01 00:15:00,1\n2019-01-01 00:30:00,2\n2019-01-01 00:15:00,3\n",
     "lines 2 and 4 both give time 2019-01-01 00:15:00 with different values (1.0 and 3.0)"),
    ("latin-1 text", (HEADER + "2019-01-01 00:15:00,1\n# caf\xe9\n").encode("latin-1"), "is not UTF-8 text"),
    ("binary", b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR", "is not a text CSV file (binary data at byte 8)"),
    ("empty file", b"", "the file is empty; expected the header 'time,meterusage'"),
    ("before year 1 in a zone east of UTC", HEADER + "0001-01-01 00:15:00,1\n",
     "line 2: time '0001-01-01 00:15:00' is outside 0001-01-02 to 9999-12-30"),
    ("the last day of year 9999", HEADER + "2019-01-01 00:15:00,1\n9999-12-31 23:45:00,2\n",
     "line 3: time '9999-12-31 23:45:00' is outside 0001-01-02 to 9999-12-30"),
    ("line break inside a quoted time", HEADER + '"2019-01-01\n00:15:00",1\n',
     "holds a line break"),
    ("invalid UTF-8 far into the file",
     (HEADER + "".join(f"2019-01-{1 + i // 96:02d} {i % 96 // 4:02d}:{i % 4 * 15:02d}:00,1\n" for i in range(3000))).encode()
     + b"2019-02-01 00:00:00,\xff\n", "is not UTF-8 text"),
    ("line after a blank line", HEADER + "2019-01-01 00:15:00,1\n\n2019-01-01 00:45:00,x\n",
     "line 4: meterusage 'x' is not a number"),
]


@pytest.mark.parametrize(("content", "message"), [case[1:] for case in REJECTED], ids=[c[0] for c in REJECTED])
def test_bad_file_is_rejected_and_changes_nothing(existing_meter, write_csv, content, message):
    path = write_csv(content, "meter.csv")

    with pytest.raises(CommandError) as error:
        import_file(path)

    assert str(path) in str(error.value)
    assert message in str(error.value)
    assert stored() == existing_meter
    assert Meter.objects.count() == 1
    run = ImportRun.objects.latest("started_at")
    assert run.status == ImportRun.Status.FAILED
    assert message in run.error


def test_invalid_rows_are_all_reported(write_csv):
    path = write_csv(HEADER + "x,1\n2019-01-01 00:30:00,2\n2019-01-01 00:45:00,y\n", "new-meter.csv")

    with pytest.raises(CommandError, match=r"2 invalid rows, nothing imported: line 2: time 'x' .*; line 4: meterusage 'y'"):
        import_file(path)

    assert not Meter.objects.exists()
    run = ImportRun.objects.get()
    assert (run.meter, run.meter_name, run.rows_invalid, run.rows_read) == (None, "new-meter", 2, 3)
    assert [(r["line"], r["kind"]) for r in run.rejected_rows] == [(2, "invalid"), (4, "invalid")]


@pytest.mark.parametrize(
    ("target", "message"),
    [("missing.csv", "missing.csv: no such file"), (".", "is a directory, not a CSV file")],
)
def test_missing_file_or_directory(tmp_path, target, message):
    with pytest.raises(CommandError, match=message):
        import_file(tmp_path / target)
    assert not ImportRun.objects.exists()


def test_unknown_time_zone(write_csv):
    with pytest.raises(CommandError, match="--tz: 'Mars/Olympus' is not an IANA time zone"):
        import_file(write_csv(HEADER + "2019-01-01 00:15:00,1\n"), time_zone="Mars/Olympus")


def test_meter_name_must_be_a_slug(write_csv):
    with pytest.raises(CommandError, match="meter name 'my meter' has characters other than letters, digits"):
        import_file(write_csv(HEADER + "2019-01-01 00:15:00,1\n"), meter="my meter")


ACCEPTED = [
    ("CRLF line ends", HEADER.replace("\n", "\r\n") + "2019-01-01 00:15:00,1.5\r\n2019-01-01 00:30:00,2\r\n",
     [(utc(2019, 1, 1, 0, 15), 1.5), (utc(2019, 1, 1, 0, 30), 2.0)], 0),
    ("UTF-8 BOM", "\ufeff" + HEADER + "2019-01-01 00:15:00,1.5\n", [(utc(2019, 1, 1, 0, 15), 1.5)], 0),
    ("extra columns", "time,meterusage,quality\n2019-01-01 00:15:00,1.5,good\n",
     [(utc(2019, 1, 1, 0, 15), 1.5)], 0),
    ("columns swapped", "meterusage,time\n1.5,2019-01-01 00:15:00\n", [(utc(2019, 1, 1, 0, 15), 1.5)], 0),
    ("unsorted rows", HEADER + "2019-01-01 00:30:00,2\n2019-01-01 00:15:00,1\n",
     [(utc(2019, 1, 1, 0, 15), 1.0), (utc(2019, 1, 1, 0, 30), 2.0)], 0),
    ("agreeing duplicate", HEADER + "2019-01-01 00:15:00,1\n2019-01-01 00:15:00,1\n",
     [(utc(2019, 1, 1, 0, 15), 1.0)], 1),
    ("ISO T separator, no seconds", HEADER + "2019-01-01T00:15,1\n", [(utc(2019, 1, 1, 0, 15), 1.0)], 0),
    ("spaces around fields", HEADER + " 2019-01-01 00:15:00 , 55.09 \n", [(utc(2019, 1, 1, 0, 15), 55.09)], 0),
    ("empty, infinite and missing values", HEADER + "2019-01-01 00:15:00,\n2019-01-01 00:30:00,inf\n"
     "2019-01-01 00:45:00,NULL\n2019-01-01 01:00:00,4\n", [(utc(2019, 1, 1, 1), 4.0)], 3),
    ("blank lines", HEADER + "\n2019-01-01 00:15:00,1\n\n", [(utc(2019, 1, 1, 0, 15), 1.0)], 0),
    ("header only", HEADER, [], 0),
    ("quoted fields", '"time","meterusage"\n"2019-01-01 00:15:00","1.5"\n', [(utc(2019, 1, 1, 0, 15), 1.5)], 0),
]


@pytest.mark.parametrize(("content", "expected", "skipped"), [c[1:] for c in ACCEPTED], ids=[c[0] for c in ACCEPTED])
def test_awkward_but_valid_file_is_accepted(write_csv, content, expected, skipped):
    import_file(write_csv(content))

    assert stored() == expected
    run = ImportRun.objects.get()
    assert run.status == ImportRun.Status.SUCCEEDED
    assert (run.rows_inserted, run.rows_skipped) == (len(expected), skipped)


def test_skipped_rows_name_their_line_and_reason(write_csv):
    import_file(write_csv(HEADER + "2019-01-01 00:15:00,\n2019-01-01 00:30:00,-inf\n2019-01-01 00:30:00,-inf\n"
                          "2019-01-01 00:45:00,3\n2019-01-01 00:45:00,3\n"))

    run = ImportRun.objects.get()
    assert [(r["line"], r["reason"]) for r in run.rejected_rows] == [
        (2, "empty value"),
        (3, "infinite value"),
        (4, "infinite value"),
        (6, "duplicate of line 5"),
    ]
    assert run.summary() == "1 inserted, 0 updated, 0 unchanged, 4 skipped"


def test_failure_late_in_a_large_file_writes_nothing(write_csv):
    rows = [f"2019-01-{1 + i // 96:02d} {i % 96 // 4:02d}:{i % 4 * 15:02d}:00,{i}.5" for i in range(96 * 20)]
    rows.append("2019-01-21 00:00:00,oops")

    with pytest.raises(CommandError, match=f"line {len(rows) + 1}: meterusage 'oops'"):
        import_file(write_csv(HEADER + "\n".join(rows) + "\n"), batch_size=100)

    assert not Reading.objects.exists()
    assert not Meter.objects.exists()


def test_import_racing_another_into_the_same_range_fails_cleanly(existing_meter, write_csv, monkeypatch):
    # As if another import had written this range after this one looked at it.
    monkeypatch.setattr(upsert, "COMPARE_AT_ONCE_ROWS", 0)
    monkeypatch.setattr(upsert, "_meters_with_readings_in", lambda cursor, spans: set())

    with pytest.raises(CommandError, match="another import wrote readings of meter 'meter' in the same range"):
        import_file(write_csv(HEADER + "2018-12-31 23:45:00,2.0\n2019-01-01 00:00:00,3.0\n", "meter.csv"))

    assert stored() == existing_meter
    assert ImportRun.objects.latest("started_at").status == ImportRun.Status.FAILED


def test_invalid_rows_are_listed_in_line_order(write_csv):
    body = "2019-01-01 00:15:00,abc\n2019-13-01 00:00:00,2\n2019-01-01 00:45:00,xyz\n0001-01-01 00:00:00,3\n"

    with pytest.raises(CommandError, match="4 invalid rows"):
        import_file(write_csv(HEADER + body))

    run = ImportRun.objects.get()
    assert [row["line"] for row in run.rejected_rows] == [2, 3, 4, 5]
