"""READINGS_SOURCES and MQTT mistakes are reported by `manage.py check` with stable ids."""
import pytest
from django.core.management import call_command
from django.core.management.base import SystemCheckError

from readings.checks import check_mqtt_settings, check_readings_sources
from readings.sources import SeriesStore, SourcesHandler, get_source
from readings.sources.csv import CsvSource
from readings.sources.influx import InfluxSource
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



def test_a_handler_takes_its_backends_directly(tmp_path):
    handler = SourcesHandler({
        "default": {"BACKEND": "readings.sources.sql.SqlSource"},
        "files": {"BACKEND": "readings.sources.csv.CsvSource", "OPTIONS": {"DIRECTORY": str(tmp_path)}},
        "series": {"BACKEND": "readings.sources.influx.InfluxSource", "OPTIONS": {"URL": "http://127.0.0.1:1"}},
    })

    assert isinstance(handler["files"], CsvSource) and handler["files"].directory == tmp_path
    assert handler.aliases_serving(SeriesStore) == ["series"]
    assert isinstance(handler["series"], InfluxSource) and handler["series"].config.url == "http://127.0.0.1:1"
    assert handler.aliases_serving(SqlSource) == ["default"]


def test_the_registry_follows_the_setting(settings, tmp_path):
    first = get_source("default")
    settings.READINGS_SOURCES = {"default": {"BACKEND": "readings.sources.csv.CsvSource", "OPTIONS": {"DIRECTORY": str(tmp_path)}}}

    assert get_source("default") is not first
    assert isinstance(get_source("default"), CsvSource)


@pytest.mark.parametrize(
    ("url", "topic", "expected"),
    [
        ("", "meterusage/v1/meters/+/readings", []),
        ("mqtt://user:pw@broker:1884", "site/+/readings", []),
        ("http://broker", "meterusage/v1/meters/+/readings", ["readings.E003"]),
        ("mqtt://broker", "meterusage/v1/meters/#", ["readings.E004"]),
        ("mqtt://broker", "a/+/b/+", ["readings.E004"]),
    ],
)
def test_mqtt_settings(settings, url, topic, expected):
    settings.MQTT_URL, settings.MQTT_TOPIC = url, topic

    assert [error.id for error in check_mqtt_settings(None)] == expected
