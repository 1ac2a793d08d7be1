"""The meter name rule (letters, digits, '-' and '_') holds however a meter is made, and names
cannot reach outside what they name: a CSV file of the source's folder, one InfluxDB tag value."""
from datetime import timedelta

import numpy as np
import pytest
from django.db import IntegrityError, connection, transaction
from django.utils import timezone

from readings.domain import SourceUnavailable
from readings.models import Meter
from readings.sources.csv import CsvSource
from readings.sources.influx.client import line_protocol

pytestmark = pytest.mark.django_db

BROKEN_NAMES = ["two\nlines", "back\\slash", "../outside", "a/b", "with space", "comma,name", "", "é"]


@pytest.mark.parametrize("name", BROKEN_NAMES)
def test_the_orm_cannot_make_a_meter_with_a_broken_name(name):
    with pytest.raises(IntegrityError), transaction.atomic():
        Meter.objects.create(name=name)


@pytest.mark.parametrize("name", BROKEN_NAMES)
def test_plain_sql_cannot_either(name):
    table = Meter._meta.db_table
    columns = "name, description, unit, time_zone, interval, source, reading_count, created_at, updated_at"
    now = connection.ops.adapt_datetimefield_value(timezone.now())
    with pytest.raises(IntegrityError), transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(
            f"INSERT INTO {table} ({columns}) VALUES (%s, '', 'kWh', 'UTC', %s, 'default', 0, %s, %s)",
            [name, Meter._meta.get_field("interval").get_db_prep_value(timedelta(minutes=15), connection), now, now],
        )


def test_fixtures_go_through_the_same_rule(tmp_path):
    from django.core.management import call_command

    fixture = tmp_path / "meters.json"
    fixture.write_text('[{"model": "readings.meter", "pk": 900, "fields": {"name": "x\\ny", '
                       '"created_at": "2019-01-01T00:00:00Z", "updated_at": "2019-01-01T00:00:00Z"}}]')

    with pytest.raises(IntegrityError):
        call_command("loaddata", str(fixture), verbosity=0)


@pytest.mark.parametrize("name", ["../outside", "a/../../b", "/etc/passwd"])
def test_a_csv_source_serves_only_files_of_its_folder(tmp_path, name):
    source = CsvSource(alias="files", DIRECTORY=str(tmp_path / "data"))

    with pytest.raises(SourceUnavailable, match="does not name a file of"):
        source.path_for(Meter(name=name))


def test_line_protocol_refuses_what_it_cannot_write():
    for name in ("two\nlines", "back\\slash"):
        with pytest.raises(ValueError, match="cannot be an InfluxDB tag value"):
            line_protocol(name, np.array([0]), np.array([1.0]))
    assert line_protocol("a b,c=d", np.array([0]), np.array([1.0])) == b"meter_usage,meter=a\\ b\\,c\\=d value=1 0\n"


@pytest.mark.parametrize("interval", [timedelta(0), timedelta(seconds=-900), timedelta(microseconds=500)])
def test_an_interval_under_a_second_cannot_be_stored(interval):
    with pytest.raises(IntegrityError), transaction.atomic():
        Meter.objects.create(name="m", interval=interval)
