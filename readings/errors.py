"""Errors of the read API, independent of the transport that reports them."""
from dataclasses import dataclass


@dataclass(frozen=True)
class FieldViolation:
    field: str
    description: str


class InvalidArgument(Exception):
    """A request that cannot be answered as asked; names every offending field."""

    def __init__(self, *violations: FieldViolation):
        self.violations = list(violations)
        super().__init__("; ".join(f"{v.field}: {v.description}" for v in violations))


class MeterNotFound(Exception):
    def __init__(self, name: str):
        self.name = name
        super().__init__(f"no meter named {name!r}")
