"""System checks of the readings settings, run at start like every Django check."""
from django.conf import settings
from django.core.checks import Error, register
from django.core.exceptions import ImproperlyConfigured


@register()
def check_readings_sources(app_configs, **kwargs):
    from readings.sources import SourcesHandler

    config = getattr(settings, "READINGS_SOURCES", None)
    if not isinstance(config, dict) or "default" not in config:
        return [
            Error(
                "READINGS_SOURCES must be a dict with a 'default' alias.",
                hint='{"default": {"BACKEND": "readings.sources.sql.SqlSource"}}',
                id="readings.E001",
            )
        ]
    errors = []
    handler = SourcesHandler(config)
    for alias in config:
        try:
            handler.create_source(alias)
        except ImproperlyConfigured as exc:
            errors.append(Error(str(exc), obj="READINGS_SOURCES", id="readings.E002"))
    return errors


@register()
def check_mqtt_settings(app_configs, **kwargs):
    from readings.mqtt.batches import meter_level
    from readings.mqtt.consumer import broker_address

    errors = []
    if settings.MQTT_URL:
        try:
            broker_address(settings.MQTT_URL)
        except ValueError as exc:
            errors.append(Error(str(exc), obj="MQTT_URL", id="readings.E003"))
    try:
        meter_level(settings.MQTT_TOPIC)
    except ValueError as exc:
        errors.append(Error(str(exc), hint="meterusage/v1/meters/+/readings", obj="MQTT_TOPIC", id="readings.E004"))
    return errors
