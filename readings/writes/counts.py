"""What a write did, counted the same way for a file import, a seed, a live write and a batch of
MQTT messages."""
from dataclasses import dataclass, field, fields

from readings.writes.rows import RowProblem


@dataclass
class WriteCounts:
    """Readings inserted, updated (a new value for a time) and unchanged in the relational store,
    rows skipped (no value, or a repeat), points that reached a series store, and, for MQTT, the
    messages taken, those rejected and those skipped (no reading with a value). `skipped_rows` names a live write's skipped rows by meter.

    The relational figures roll back with a failed write; points written to a series store stay."""

    inserted: int = 0
    updated: int = 0
    unchanged: int = 0
    skipped: int = 0
    points: int = 0
    messages: int = 0
    rejected: int = 0
    messages_skipped: int = 0
    skipped_rows: list[tuple[str, RowProblem]] = field(default_factory=list)  # (meter name, problem)
    # Ids of the Write rows that record who wrote; not a count, so not compared.
    writes: list[int] = field(default_factory=list, compare=False)

    @property
    def readings(self) -> int:
        return self.inserted + self.updated + self.unchanged + self.skipped

    def add(self, other: "WriteCounts") -> None:
        for each in fields(self):
            setattr(self, each.name, getattr(self, each.name) + getattr(other, each.name))

    def add_points(self, count: int) -> None:
        self.points += count
