"""READINGS_SOURCES mistakes are reported by `manage.py check` with stable ids."""
from django.core.management import call_command
from django.core.management.base import SystemCheckError
import pytest

from readings.checks import check_readings_sources
from readings.sources import get_source
from readings.sources.sql import SqlSource


def ids(settings_value, settings) -> list[str]:
    settings.READINGS_SOURCES = settings_value
    return [error.id for error in check_readings_sources(None)]


def test_default_settings_pass():
    assert check_readings_sources(None) == []


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ([], ["readings.E001"]),
        ({"csv": {"BACKEND": "readings.sources.csv.CsvSource"}}, ["readings.E001"]),
        ({"default": {}}, ["readings.E002"]),
        ({"default": {"BACKEND": "readings.sources.nope.Nope"}}, ["readings.E002"]),
        ({"default": {"BACKEND": "readings.sources.sql.SqlSource", "OPTIONS": {"COLOUR": "red"}}}, ["readings.E002"]),
    ],
)
def test_bad_settings_are_errors(settings, value, expected):
    assert ids(value, settings) == expected


def test_check_command_names_the_alias(settings):
    settings.READINGS_SOURCES = {"default": {"BACKEND": "readings.sources.sql.SqlSource"}, "x": {"BACKEND": "no.such.Thing"}}

    with pytest.raises(SystemCheckError, match=r"readings.E002.*READINGS_SOURCES\['x'\]: cannot import 'no.such.Thing'"):
        call_command("check")


def test_sources_are_built_once_per_alias(settings):
    settings.READINGS_SOURCES = {"default": {"BACKEND": "readings.sources.sql.SqlSource"}}

    source = get_source("default")

    assert isinstance(source, SqlSource)
    assert get_source("default") is source

