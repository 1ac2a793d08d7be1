"""The HTTP API's contract: query parameters in, records and documents out.

Each document (meters, readings, aggregates, completeness, changes, write results) is declared
once here, as a `Document`: the OpenAPI schema reads its fields, and `gateway.api.documents`
builds it with `Document.build` and `Document.rows` as plain dicts in the declared order (a
serializer per row costs more than the gRPC call for a page of 10,000 readings).
"""
import functools

from drf_spectacular.extensions import OpenApiSerializerFieldExtension
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from gateway.api import times
from gateway.api.filters import parse_true_or_false
from readings import domain
from readings.domain import (
    METERS_PAGE_SIZE,
    READINGS_PAGE_SIZE,
    Window,
    time_zone_named,
)
from readings.models import ImportRun, RejectedMessage

WINDOWS = [window.value for window in Window]
# Query names of the meter list's orderings, and the service's order_by for each: its own names,
# and the names of the model's fields, which this API accepted before.
METER_ORDERINGS = {
    **{name: name for name in domain.METER_ORDERINGS},
    "first_reading_at": "first_reading_time",
    "last_reading_at": "last_reading_time",
}
TIME_HELP = (
    "RFC 3339 time (`2019-01-01T00:15:00Z`, `2019-01-01T01:15:00+01:00`), or a date alone "
    "(`2019-01-01`: local midnight in `tz`), or a date and time without offset (local time in `tz`)."
)


class TimeField(serializers.CharField):
    """An RFC 3339 time, a date alone or a local date and time; a datetime, naive when local."""

    def __init__(self, *, example: str, **kwargs):
        self.example = example
        super().__init__(**kwargs)

    def run_validation(self, data=serializers.empty):
        # The text passes CharField's checks (length, NUL characters) before it is parsed.
        text = super().run_validation(data)
        try:
            return times.parse_time(text)
        except ValueError as exc:
            raise serializers.ValidationError(str(exc)) from None


class TimeFieldSchema(OpenApiSerializerFieldExtension):
    target_class = TimeField

    def map_serializer_field(self, auto_schema, direction):
        return {"type": "string", "pattern": times.TIME_PATTERN, "example": self.target.example}


@extend_schema_field({"type": "string", "example": "Europe/Amsterdam"})
class TimeZoneField(serializers.CharField):
    """An IANA time zone name; a ZoneInfo."""

    def run_validation(self, data=serializers.empty):
        text = super().run_validation(data)
        try:
            return time_zone_named(text)
        except ValueError as exc:
            raise serializers.ValidationError(str(exc)) from None


@extend_schema_field({"oneOf": [{"type": "number"}, {"type": "string"}], "nullable": True, "example": 1.5})
class ReadingValueField(serializers.Field):
    """A reading's value: a number, or text as a file holds it (or null: no value)."""

    default_error_messages = {"invalid": "expected a number, text or null"}

    def to_internal_value(self, data):
        if isinstance(data, bool) or not isinstance(data, (int, float, str)):
            self.fail("invalid")
        return data

    def to_representation(self, value):
        return value


class RangeQuery(serializers.Serializer):
    """Each field's `source` is the request field of the service it feeds (the service names
    those in its refusals)."""

    start = TimeField(
        source="start_time", example="2019-01-01T00:00:00Z", help_text=f"Start of the range (included). {TIME_HELP}",
    )
    end = TimeField(
        source="end_time", example="2019-01-02T00:00:00Z", help_text=f"End of the range (excluded). {TIME_HELP}",
    )
    tz = TimeZoneField(
        source="time_zone", required=False, max_length=64,
        help_text="IANA time zone that dates and local times are read in; default: the meter's zone.",
    )


class ReadingsQuery(RangeQuery):
    page_size = serializers.IntegerField(
        required=False, default=READINGS_PAGE_SIZE[0], min_value=1, max_value=READINGS_PAGE_SIZE[1],
        help_text=f"Readings per page (default {READINGS_PAGE_SIZE[0]}, at most {READINGS_PAGE_SIZE[1]}).",
    )
    page_token = serializers.CharField(
        required=False, default="", allow_blank=True, max_length=1000,
        help_text="`next_page_token` of the previous page, sent with the same meter, start, end and tz.",
    )


class AggregatesQuery(RangeQuery):
    window = serializers.ChoiceField(choices=WINDOWS, help_text="Window width.")
    tz = TimeZoneField(
        source="time_zone", required=False, max_length=64,
        help_text="IANA time zone whose wall clock aligns the windows (days start at its midnight) "
        "and that dates and local times are read in; default: the meter's zone.",
    )


class Document(serializers.Serializer):
    """A document of the API, declared once: the OpenAPI schema reads its fields, and `build`
    and `rows` make the plain dicts the renderers write, with exactly these members, in order."""

    @classmethod
    @functools.cache
    def members(cls) -> tuple[tuple[str, ...], frozenset[str]]:
        """The members in order, and those every document has (the others are `required=False`)."""
        fields = cls().fields
        return tuple(fields), frozenset(name for name, field in fields.items() if field.required)

    @classmethod
    def _check(cls, given) -> tuple[str, ...]:
        members, required = cls.members()
        if not required <= given.keys() <= set(members):
            raise TypeError(f"{cls.__name__} has the members {', '.join(members)}; given {', '.join(given)}")
        return members

    @classmethod
    def build(cls, **values) -> dict:
        return {member: values[member] for member in cls._check(values) if member in values}

    @classmethod
    def rows(cls, **columns) -> list[dict]:
        """One document per row of `columns` (a sequence per member, all of one length)."""
        members = [member for member in cls._check(columns) if member in columns]
        return _rows(members, [columns[member] for member in members])


def _rows(members: list[str], columns: list) -> list[dict]:
    # A dict display per row costs a third of dict(zip(...)): written out for the small documents
    # that come by the thousand (readings, changes, gaps).
    rows = zip(*columns, strict=True)
    if len(members) == 2:
        a, b = members
        return [{a: x, b: y} for x, y in rows]
    if len(members) == 3:
        a, b, c = members
        return [{a: x, b: y, c: z} for x, y, z in rows]
    if len(members) == 4:
        a, b, c, d = members
        return [{a: w, b: x, c: y, d: z} for w, x, y, z in rows]
    return [dict(zip(members, row)) for row in rows]


class ReadingDocument(Document):
    time = serializers.DateTimeField(help_text="Time of the reading, RFC 3339 UTC.")
    value = serializers.FloatField()


class ReadingsDocument(Document):
    meter = serializers.CharField()
    start = serializers.DateTimeField(help_text="Start of the range, RFC 3339 UTC.")
    end = serializers.DateTimeField(help_text="End of the range (excluded), RFC 3339 UTC.")
    readings = ReadingDocument(many=True, help_text="Readings oldest first.")
    next = serializers.URLField(allow_null=True, help_text="URL of the next page; null on the last page.")
    next_page_token = serializers.CharField(allow_blank=True, help_text="Token of the next page; empty on the last.")


class BucketDocument(Document):
    start = serializers.DateTimeField()
    end = serializers.DateTimeField(help_text="Excluded.")
    count = serializers.IntegerField(help_text="Readings in the window.")
    expected_count = serializers.IntegerField(help_text="Readings the window should hold at the meter's interval.")
    coverage = serializers.FloatField(help_text="count / expected_count, 0 to 1.")
    sum = serializers.FloatField(help_text="Sum of the values; 0 for an empty window.")
    mean = serializers.FloatField(allow_null=True, help_text="Null for an empty window.")
    min = serializers.FloatField(allow_null=True)
    max = serializers.FloatField(allow_null=True)


class AggregatesDocument(Document):
    meter = serializers.CharField()
    start = serializers.DateTimeField()
    end = serializers.DateTimeField()
    window = serializers.ChoiceField(choices=WINDOWS)
    time_zone = serializers.CharField(help_text="The zone the windows are aligned in.")
    buckets = BucketDocument(many=True, help_text="Every window of the range in time order, empty ones included.")
    total = BucketDocument(help_text="The whole range as one window.")
    min_time = serializers.DateTimeField(allow_null=True, help_text="When the smallest value was read.")
    max_time = serializers.DateTimeField(allow_null=True, help_text="When the largest value was read.")


class GapDocument(Document):
    start = serializers.DateTimeField()
    end = serializers.DateTimeField()
    missing_count = serializers.IntegerField()


class CompletenessDocument(Document):
    meter = serializers.CharField()
    start = serializers.DateTimeField()
    end = serializers.DateTimeField()
    interval_seconds = serializers.IntegerField(help_text="The meter's interval; slots are its multiples since the epoch.")
    expected_count = serializers.IntegerField()
    present_count = serializers.IntegerField()
    missing_count = serializers.IntegerField()
    coverage = serializers.FloatField(help_text="present_count / expected_count, 0 to 1.")
    gap_count = serializers.IntegerField(help_text="Runs of missing slots in the range, all of them.")
    gaps = GapDocument(many=True, help_text="The runs of missing slots in time order (the first 10000).")


class FieldErrorDocument(serializers.Serializer):
    field = serializers.CharField(help_text="Query parameter (or field) at fault; empty for the request as a whole.")
    description = serializers.CharField()
    line = serializers.IntegerField(required=False, help_text="A refused write of CSV: the row's line in the file.")
    index = serializers.IntegerField(required=False, help_text="A refused write of JSON: the reading's index in the list.")
    value = ReadingValueField(required=False, help_text="A refused write: the row's value as sent.")
    reason = serializers.CharField(required=False, help_text="A refused write: why the row is invalid (as `description`).")


class ProblemDocument(serializers.Serializer):
    """RFC 9457 problem details."""

    type = serializers.CharField(help_text="Always about:blank: the status says what went wrong.")
    title = serializers.CharField(help_text="The HTTP status phrase.")
    status = serializers.IntegerField()
    detail = serializers.CharField()
    instance = serializers.CharField(required=False, help_text="Path of the request.")
    grpc_code = serializers.CharField(
        required=False, help_text="Status code of the gRPC service, when the error comes from it (or it was unreachable)."
    )
    errors = FieldErrorDocument(
        many=True, required=False, help_text="Each invalid parameter, for 400; a refused write lists its first 20 invalid rows.",
    )
    invalid_count = serializers.IntegerField(required=False, help_text="A refused write: how many rows were invalid in all.")


# ---- Writes ----------------------------------------------------------------------------------


class WriteTimeField(serializers.CharField):
    """A reading's time as text; the service reads it by the rules of files."""

    def __init__(self, **kwargs):
        super().__init__(allow_blank=True, trim_whitespace=False, max_length=64, **kwargs)


class ReadingIn(serializers.Serializer):
    time = WriteTimeField(
        help_text="RFC 3339 (`2019-01-01T00:15:00Z`), or a wall time without offset in the meter's zone "
        "(`2019-01-01 00:15:00`), as in files. Whole seconds.",
    )
    value = ReadingValueField(
        allow_null=True,
        help_text="A number, or text as files hold it (`\"1.5\"`, `\"NaN\"`); null, `\"NaN\"` or `\"NA\"` mean "
        "no value: the reading is skipped and listed.",
    )


class ReadingsIn(serializers.Serializer):
    readings = ReadingIn(many=True)


def readings_of_json(data) -> list[dict]:
    """The readings of a JSON body, a list or {"readings": [...]}; 400 naming each field at fault."""
    items = data.get("readings") if isinstance(data, dict) else data
    if not isinstance(items, list):
        raise serializers.ValidationError({"readings": 'expected a list of readings, or {"readings": [...]}'})
    readings = ReadingIn(data=items, many=True)
    if not readings.is_valid():
        found = readings.errors
        by_index = found.items() if isinstance(found, dict) else enumerate(found)
        errors = {
            f"readings[{index}].{name}": messages
            for index, fields in by_index if isinstance(fields, dict)
            for name, messages in fields.items()
        }
        raise serializers.ValidationError(errors or found)
    return readings.validated_data


class RejectedReadingDocument(Document):
    line = serializers.IntegerField(required=False, help_text="CSV: the row's line in the file (the header is line 1).")
    index = serializers.IntegerField(required=False, help_text="JSON: the reading's index in the list, from 0.")
    value = ReadingValueField(allow_null=True, help_text="The value as sent.")
    reason = serializers.CharField(help_text="Why, in the words of a file import (`NaN`, `duplicate of line 12`).")


class WriteResultDocument(Document):
    inserted = serializers.IntegerField(help_text="Readings new to the store.")
    updated = serializers.IntegerField(help_text="Readings that replaced another value for their time (corrections).")
    unchanged = serializers.IntegerField(help_text="Readings the store already held with the same value.")
    skipped = serializers.IntegerField(help_text="Rows without a value, or repeating another row; listed in `rejected`.")
    rejected = RejectedReadingDocument(many=True, help_text="The rows skipped.")


# ---- The changes feed --------------------------------------------------------------------------


class ChangesQuery(serializers.Serializer):
    after = serializers.CharField(
        source="resume_token", required=False, default="", allow_blank=True, max_length=4000,
        help_text="`next` of the previous answer: the changes committed after it. Without it the feed starts "
        "now: no changes, and a `next` to poll with.",
    )


class ChangeDocument(Document):
    time = serializers.DateTimeField(help_text="Time of the reading, RFC 3339 UTC.")
    value = serializers.FloatField()
    replaced = serializers.BooleanField(help_text="True when it replaced another value for its time (a correction).")
    commit_time = serializers.DateTimeField(help_text="When the write committed (the service's clock).")


class ChangesDocument(Document):
    meter = serializers.CharField()
    changes = ChangeDocument(many=True, help_text="Oldest first; a time may appear again with a corrected value.")
    next = serializers.CharField(help_text="Token to send as `after` next time.")
    more = serializers.BooleanField(help_text="True when more changes are already waiting: ask again at once.")


def parameters_of_fields(query_class: type[serializers.Serializer] | None) -> dict[str, str]:
    """The query parameter behind each request field of the service, from the fields' `source`."""
    if query_class is None:
        return {}
    return {field.source: name for name, field in query_class().fields.items()}


class StrictBooleanField(serializers.BooleanField):
    def to_internal_value(self, data):
        try:
            return parse_true_or_false(data)
        except ValueError as exc:
            raise serializers.ValidationError(str(exc)) from None


class MeterListQuery(serializers.Serializer):
    search = serializers.CharField(required=False, allow_blank=True, max_length=domain.SEARCH_MAX_LENGTH, help_text="Part of the name or description.")
    source = serializers.CharField(required=False, allow_blank=True, max_length=64, help_text="Alias of the readings source that serves the meter.")
    time_zone = serializers.CharField(required=False, allow_blank=True, max_length=64, help_text="IANA time zone of the meter.")
    unit = serializers.CharField(required=False, allow_blank=True, max_length=16, help_text="Unit of the values, e.g. kWh.")
    has_readings = StrictBooleanField(
        required=False,
        help_text="Only meters with (true) or without (false) readings. A meter whose store cannot answer matches neither.",
    )
    ordering = serializers.ChoiceField(
        choices=[prefix + name for name in METER_ORDERINGS for prefix in ("", "-")], required=False, default="name",
        allow_blank=True,
        help_text="Order of the list; `-` first for descending. Ties by name; meters whose store cannot answer come last.",
    )
    page = serializers.IntegerField(required=False, default=1, min_value=1, help_text="Page number, from 1.")
    page_size = serializers.IntegerField(
        required=False, default=METERS_PAGE_SIZE[0], min_value=1, max_value=METERS_PAGE_SIZE[1],
        help_text=f"Meters per page (default {METERS_PAGE_SIZE[0]}, at most {METERS_PAGE_SIZE[1]}).",
        error_messages={
            "invalid": f"must be a whole number from 1 to {METERS_PAGE_SIZE[1]}",
            "min_value": f"must be a whole number from 1 to {METERS_PAGE_SIZE[1]}",
            "max_value": f"must be a whole number from 1 to {METERS_PAGE_SIZE[1]}",
        },
    )

    def to_internal_value(self, data):
        # An empty value (?unit=, ?ordering=) means no filter, the default order or page.
        return super().to_internal_value({key: value for key, value in data.items() if value != ""})


class MeterLinksDocument(Document):
    readings = serializers.URLField()
    aggregates = serializers.URLField()
    completeness = serializers.URLField()


class MeterDocument(Document):
    url = serializers.URLField()
    name = serializers.CharField()
    description = serializers.CharField(allow_blank=True)
    unit = serializers.CharField()
    time_zone = serializers.CharField()
    interval_seconds = serializers.IntegerField()
    source = serializers.CharField(help_text="Alias of the readings source that serves the meter.")
    reading_count = serializers.IntegerField(allow_null=True, help_text="Null while the meter's store cannot answer.")
    first_reading_time = serializers.DateTimeField(allow_null=True, help_text="Null while the meter has no readings.")
    last_reading_time = serializers.DateTimeField(allow_null=True)
    readings_unavailable = serializers.CharField(
        allow_null=True, help_text="Which store cannot answer now (its figures are then null); null normally."
    )
    links = MeterLinksDocument(help_text="The meter's readings, daily aggregates and completeness over all its data.")


class MeterListDocument(Document):
    count = serializers.IntegerField(help_text="Meters matching the filters, on all pages.")
    next = serializers.URLField(allow_null=True)
    previous = serializers.URLField(allow_null=True)
    results = MeterDocument(many=True)


class ImportRunSerializer(serializers.ModelSerializer):
    meter = serializers.SlugRelatedField(slug_field="name", read_only=True)
    duration_seconds = serializers.SerializerMethodField()
    written_by = serializers.CharField(
        read_only=True, help_text='Who ran the import: "user:<name>" (an upload in admin), "command:<OS user>"; "" before this was kept.',
    )

    class Meta:
        model = ImportRun
        fields = [
            "id", "meter_name", "meter", "target", "file_name", "file_size", "file_sha256", "time_zone",
            "dry_run", "status", "started_at", "finished_at", "duration_seconds", "rows_read",
            "rows_inserted", "rows_updated", "rows_unchanged", "rows_skipped", "rows_invalid", "error", "written_by",
        ]

    def get_duration_seconds(self, run) -> float | None:
        return run.duration.total_seconds() if run.duration is not None else None


class RejectedRowDocument(serializers.Serializer):
    line = serializers.IntegerField()
    value = serializers.CharField()
    reason = serializers.CharField()
    kind = serializers.CharField(help_text="skipped or invalid.")


class ImportRunDetailSerializer(ImportRunSerializer):
    rejected_rows = RejectedRowDocument(many=True, read_only=True, help_text="The first 1000 rows set aside.")

    class Meta(ImportRunSerializer.Meta):
        fields = [*ImportRunSerializer.Meta.fields, "rejected_rows"]



class RejectedMessageSerializer(serializers.ModelSerializer):
    payload_excerpt = serializers.CharField(read_only=True, help_text=f"The payload's first {RejectedMessage.EXCERPT_CHARS} characters.")
    payload_size = serializers.IntegerField(read_only=True, help_text="Bytes of the whole payload.")

    class Meta:
        model = RejectedMessage
        fields = ["id", "received_at", "outcome", "channel", "topic", "meter_name", "payload_excerpt", "payload_size",
                  "payload_sha256", "reason"]
