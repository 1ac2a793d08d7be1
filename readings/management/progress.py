"""What the file commands share: a one-line progress bar shown only on a terminal, and the
--ambiguous option."""
import time

from readings.writes.rows import Ambiguous


def add_ambiguous_argument(parser) -> None:
    parser.add_argument(
        "--ambiguous",
        choices=[choice.value for choice in Ambiguous],
        default=Ambiguous.INFER.value,
        help="How naive times in an hour that repeats when clocks go back are read: infer (default) "
        "from the order of rows (a step back in time starts the second pass; rows the file cannot "
        "place are invalid), earlier (all in the first pass, summer time) or later (all in the second).",
    )


class ProgressBar:
    """Call with (done, total); draws on `stream` at most ten times a second when it is a TTY."""

    width = 30

    def __init__(self, stream, label: str):
        self.stream = stream
        self.label = label
        self.enabled = stream.isatty()
        self._drawn_at = 0.0

    def __call__(self, done: int, total: int) -> None:
        now = time.monotonic()
        if not self.enabled or (now - self._drawn_at < 0.1 and done < total):
            return
        self._drawn_at = now
        fraction = done / total if total else 1.0
        filled = int(self.width * fraction)
        bar = "#" * filled + "-" * (self.width - filled)
        self.stream.write(f"\r{self.label} [{bar}] {fraction:6.1%}", ending="")
        self.stream.flush()

    def close(self) -> None:
        if self.enabled and self._drawn_at:
            self.stream.write("\r" + " " * (len(self.label) + self.width + 12) + "\r", ending="")
            self.stream.flush()
