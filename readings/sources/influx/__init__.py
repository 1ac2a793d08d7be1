"""InfluxDB as a readings source, spoken to over its 1.x HTTP API (see client.py)."""
from readings.sources.influx.source import InfluxSource

__all__ = ["InfluxSource"]
