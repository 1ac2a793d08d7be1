"""The relational store (Django's database) as a readings source, and the SQL that writes to it."""
from readings.sources.sql.source import SqlSource

__all__ = ["SqlSource"]
