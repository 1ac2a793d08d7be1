"""The vocabulary every layer shares: windows, the span of time served, time zones, meter names,
slots, and the errors of a request. The CSV reader, the sources, the gRPC service and the HTTP API
all import these from here, so that they cannot disagree.
"""
import enum
import functools
import json
import re
import zoneinfo
from dataclasses import dataclass


class Window(enum.Enum):
    """Width of an aggregation window; days and longer follow a zone's wall clock."""

    FIFTEEN_MINUTES = "15m"
    HOUR = "hour"
    DAY = "day"
    WEEK = "week"
    MONTH = "month"

    @property
    def fixed_seconds(self) -> int | None:
        """Seconds of a window that never changes length; None for calendar windows."""
        return {"15m": 900, "hour": 3600}.get(self.value)

    @property
    def nominal_seconds(self) -> int:
        """Typical length, for estimates (how many windows a range holds)."""
        return self.fixed_seconds or {"day": 86400, "week": 7 * 86400, "month": 2_629_746}[self.value]


# Within the span of google.protobuf.Timestamp and Python's datetime (years 1 to 9999), a day
# short at each end so that local times in any zone stay representable.
MIN_EPOCH, MAX_EPOCH = -62_135_510_400, 253_402_214_400
SPAN_TEXT = "0001-01-02 to 9999-12-30"

# Limits of a request, as the contract states them: (default, maximum) page sizes, and caps.
METERS_PAGE_SIZE = (100, 1000)
READINGS_PAGE_SIZE = (1000, 10_000)
# Readings per stream message: about 16k readings (≈200 kB) reach the decoding client's limit
# while keeping the first message quick (bench/grpc_bench.py).
STREAM_BATCH_SIZE = (16_384, 50_000)
MAX_BUCKETS = 100_000
MAX_COMPLETENESS_SLOTS = 1_000_000
GAPS_KEPT = 10_000
# Readings in one write (one transaction, checked and staged in memory).
MAX_WRITE_ROWS = 100_000
# Changes in one answer of the HTTP changes feed: a client far behind catches up in several.
CHANGES_PER_ANSWER = 10_000
# What a list of meters can be ordered by (ListMeters' order_by, the HTTP API's ?ordering=).
METER_ORDERINGS = ("name", "reading_count", "first_reading_time", "last_reading_time")
# Characters of a meter search (ListMeters' search, the HTTP API's ?search=): SQLite refuses a
# LIKE pattern past 50,000 bytes as if the store were down.
SEARCH_MAX_LENGTH = 200


@dataclass(frozen=True, order=True)
class Instant:
    """A time of a request, as precise as it came (google.protobuf.Timestamp's seconds and nanos)."""

    seconds: int
    nanos: int = 0

    def ceil(self) -> int:
        """The first whole second at or after this instant."""
        return self.seconds + (1 if self.nanos > 0 else 0)


def instant_violation(field: str, value: Instant) -> "FieldViolation | None":
    """What is wrong with a time of a request, if anything: nanos out of their range, or a time
    outside the span served."""
    if not 0 <= value.nanos <= 999_999_999:
        return FieldViolation(field, f"nanos must be from 0 to 999999999 (got {value.nanos})")
    if not (MIN_EPOCH <= value.seconds and value.ceil() <= MAX_EPOCH):
        return FieldViolation(field, f"must be from {SPAN_TEXT}")
    return None


def slots_from(start: int, interval: int) -> int:
    """The first multiple of `interval` (since the epoch) at or after `start`."""
    return -(-start // interval) * interval


def slots_between(start, end, interval: int):
    """How many multiples of `interval` lie in [start, end); works on numpy arrays too."""
    return -(-end // interval) - -(-start // interval)


# ---- Errors of a request -------------------------------------------------------------------


@dataclass(frozen=True)
class FieldViolation:
    """One field of a request and what is wrong with it."""

    field: str
    description: str


_TOO_MANY_DIGITS = re.compile(r"Exceeds the limit \((\d+) digits\) for integer string conversion")


def _no_constant(name: str):
    raise ValueError(f"{name} is not JSON (a value is a number, a string, true, false or null)")


def json_document(text: bytes | str, *, strict: bool = True):
    """JSON text (UTF-8 bytes, or str) as Python values; ValueError saying what is wrong in the
    product's words, never Python's (too deep, too many digits, not UTF-8). `strict` refuses
    NaN and Infinity, which JSON does not have."""
    try:
        document = text.decode("utf-8") if isinstance(text, bytes) else text
        return json.loads(document, parse_constant=_no_constant if strict else None)
    except RecursionError:
        raise ValueError("arrays and objects are nested too deep") from None
    except UnicodeDecodeError as exc:
        raise ValueError(f"the body is not UTF-8 text (invalid byte at offset {exc.start})") from None
    except ValueError as exc:
        too_many = _TOO_MANY_DIGITS.search(str(exc))
        if too_many:
            raise ValueError(f"a number has more than {too_many[1]} digits") from None
        raise


# How much of one refused field's description an error carries, on gRPC and HTTP alike: messages
# of validators quote the value they refuse whole.
DESCRIPTION_CHARACTERS = 240


def cut_short(text: str, limit: int) -> str:
    """`text`, cut to `limit` characters (the last an ellipsis) when it is longer."""
    return text if len(text) <= limit else text[: limit - 1] + "…"


def quoted(text: str, limit: int = 40) -> str:
    """`text` as an error quotes it: in quotes, and cut short past `limit` characters."""
    if not isinstance(text, str) or len(text) <= limit:
        return repr(text)
    return f"{text[:limit]!r}… ({len(text):,} characters)"


class InvalidArgument(Exception):
    """A request that cannot be answered as asked; names every offending field."""

    def __init__(self, *violations: FieldViolation, count: int = 0):
        self.violations = list(violations)
        # How many there are in all, when only the first are named (a write of many invalid rows).
        self.count = max(count, len(self.violations))
        super().__init__("; ".join(f"{v.field}: {v.description}" for v in violations))


class MeterNotFound(Exception):
    def __init__(self, name: str):
        self.name = name
        super().__init__(f"no meter named {quoted(name)}")


class SourceUnavailable(Exception):
    """The store behind a source cannot answer now.

    `store` names the kind of store for clients ("InfluxDB", "the relational store"); the
    message may say where it lives and is for logs only.
    """

    def __init__(self, message: str, *, store: str = "the store"):
        self.store = store
        super().__init__(message)


# ---- Time zones ----------------------------------------------------------------------------


@functools.cache
def _zone_names() -> frozenset[str]:
    return frozenset(zoneinfo.available_timezones())


def time_zone_named(name: str) -> zoneinfo.ZoneInfo:
    """The IANA zone `name`; ValueError naming it (cut to 64 characters) when there is none."""
    if name not in _zone_names():
        raise ValueError(f"{name[:64]!r} is not an IANA time zone such as Europe/Amsterdam")
    return zoneinfo.ZoneInfo(name)


# ---- Meter names ---------------------------------------------------------------------------

METER_NAME_MAX_LENGTH = 100
# ASCII letters, digits, '-' and '_': safe in URLs, file names, line protocol and InfluxQL.
METER_NAME_PATTERN = r"[-a-zA-Z0-9_]+"
METER_NAME_RULE = "letters, digits, '-' and '_'"
# The same rule for a database check constraint: \Z, as $ would let a final line break through.
METER_NAME_REGEX = rf"^{METER_NAME_PATTERN}\Z"
_METER_NAME = re.compile(METER_NAME_PATTERN)


def check_meter_name(name: str) -> str:
    """`name` when it is a valid meter name; ValueError saying why not."""
    if not name:
        raise ValueError("is required")
    if len(name) > METER_NAME_MAX_LENGTH:
        raise ValueError(f"is longer than {METER_NAME_MAX_LENGTH} characters")
    if not _METER_NAME.fullmatch(name):
        raise ValueError(f"{name[:64]!r} has characters other than {METER_NAME_RULE}")
    return name


# ---- Who writes ----------------------------------------------------------------------------

# Room for "oauth:" and the longest user name Django allows (150), or "device:" and a meter name.
WRITTEN_BY_MAX_LENGTH = 160
# An MQTT topic is published only by its meter's device (the broker's ACL): its writes are by this
# followed by the meter's name.
DEVICE = "device:"


@dataclass(frozen=True)
class WriteBy:
    """Who a write is by, as its record says, and how it came (`channel`: file, grpc or mqtt):
    `written_by` such as "user:ann", "key:ab12cd34", "command:root" or "service"; with `per_meter`
    each meter's rows are a write of their own, by `written_by` followed by the meter's name."""

    channel: str
    written_by: str = "service"
    per_meter: bool = False

    @classmethod
    def devices(cls, channel: str = "mqtt") -> "WriteBy":
        """Writes of meters' own devices: one a meter, each by "device:<meter name>"."""
        return cls(channel, DEVICE, per_meter=True)

    def author(self, meter_name: str = "") -> str:
        """Who wrote the rows of `meter_name` (of every meter, unless `per_meter`)."""
        return cut_short(self.written_by + meter_name if self.per_meter else self.written_by, WRITTEN_BY_MAX_LENGTH)
