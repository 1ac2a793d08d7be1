import secrets
from datetime import timedelta

from django.conf import settings
from django.db import models

from readings.domain import METER_NAME_MAX_LENGTH, METER_NAME_REGEX, WRITTEN_BY_MAX_LENGTH
from readings.validators import (
    validate_interval,
    validate_meter_name,
    validate_source_alias,
    validate_time_zone,
)


class Meter(models.Model):
    """A metering point whose readings arrive at a fixed interval."""

    name = models.SlugField(max_length=METER_NAME_MAX_LENGTH, unique=True, validators=[validate_meter_name])
    description = models.TextField(blank=True)
    unit = models.CharField(max_length=16, default="kWh")
    time_zone = models.CharField(
        max_length=64,
        default="UTC",
        validators=[validate_time_zone],
        help_text="IANA zone the meter's CSV times are written in.",
    )
    interval = models.DurationField(default=timedelta(minutes=15), validators=[validate_interval])
    source = models.CharField(
        max_length=64,
        default="default",
        validators=[validate_source_alias],
        help_text="Alias in READINGS_SOURCES of the store that serves this meter's readings.",
    )
    # The readings of this meter in the Reading table, kept by every write into it: the sql
    # source's summary, so that lists stay cheap on millions of readings.
    reading_count = models.PositiveBigIntegerField(default=0, editable=False)
    first_reading_at = models.DateTimeField(null=True, blank=True, editable=False)
    last_reading_at = models.DateTimeField(null=True, blank=True, editable=False)
    # Goes up with every write that changes the meter's readings, in any store: what a cache of
    # answers about the meter is keyed by.
    data_version = models.PositiveBigIntegerField(default=0, editable=False)
    # Changes up to this ReadingChange id were pruned: a watch resuming from before it has missed
    # changes it can no longer be sent.
    changes_pruned_through = models.PositiveBigIntegerField(default=0, editable=False)
    # The customer whose meter it is (none: only staff see it), and whether anyone may read it.
    account = models.ForeignKey(
        "accounts.Account", on_delete=models.PROTECT, related_name="meters", null=True, blank=True,
    )
    public = models.BooleanField(default=False, help_text="Anyone may read this meter's readings.")
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]
        constraints = [
            # The name rule holds however a meter is made (ORM, SQL, fixtures), not only in forms:
            # names end up in URLs, file names and InfluxDB line protocol.
            models.CheckConstraint(condition=models.Q(name__regex=METER_NAME_REGEX), name="meter_name_rule"),
            # Slots are multiples of the interval: it must be a second at least.
            models.CheckConstraint(condition=models.Q(interval__gte=timedelta(seconds=1)), name="meter_interval_positive"),
        ]

    def __str__(self) -> str:
        return self.name


class StoreIdentity(models.Model):
    """A random key made once per database: resume tokens carry it, so that a token taken from
    another deployment's store (whose change ids mean other changes) is refused, not followed.

    Its table is made, with the key, by a migration and left alone by Django (unmanaged): a flush
    of the data (tests) keeps it, and reading it never writes."""

    id = models.IntegerField(primary_key=True)
    key = models.CharField(max_length=32)

    class Meta:
        managed = False
        db_table = "readings_storeidentity"

    @classmethod
    def current(cls) -> str:
        key = cls.objects.filter(pk=1).values_list("key", flat=True).first()
        if key is None:  # a database made without the migration's row
            key = cls.objects.get_or_create(pk=1, defaults={"key": secrets.token_hex(16)})[0].key
        return key


class Reading(models.Model):
    """One interval value of a meter; `time` is in UTC.

    Identified by (meter, time), with no id of its own: the time-series engines need every unique
    index to hold the partitioning columns (TimescaleDB the time, Citus the meter), and an id would
    cost each reading eight bytes and an index entry for nothing a query asks."""

    pk = models.CompositePrimaryKey("meter", "time")
    # The primary key's index serves meter lookups, so the FK needs no index of its own.
    meter = models.ForeignKey(Meter, on_delete=models.CASCADE, related_name="readings", db_index=False)
    time = models.DateTimeField()
    value = models.FloatField()

    # No index led by time: a new meter's readings would land all over it, which made imports into
    # a large store three times slower. On PostgreSQL a BRIN index of time (migration 0005) narrows
    # time ranges across meters at almost no cost to writes.

    def __str__(self) -> str:
        return f"{self.meter_id} {self.time.isoformat()} {self.value}"


class ReadingRollup(models.Model):
    """One meter's readings of one UTC hour or day summed up, kept by every write in the write's
    transaction: a long range of wide windows is answered from these rows (and the raw readings at
    its ragged ends) instead of every reading in it. `start` is the bucket's first UTC instant in
    epoch seconds."""

    pk = models.CompositePrimaryKey("meter", "start")
    # No constraint in the database, as for the change log: a write pays for every check, and
    # deleting a meter deletes its rollups (Django cascades).
    meter = models.ForeignKey(Meter, on_delete=models.CASCADE, db_index=False, db_constraint=False, related_name="+")
    start = models.BigIntegerField()
    count = models.PositiveIntegerField()
    total = models.FloatField()
    low = models.FloatField()
    high = models.FloatField()

    WIDTH = 0  # seconds

    class Meta:
        abstract = True


class HourlyRollup(ReadingRollup):
    WIDTH = 3600

    class Meta:
        db_table = "readings_rollup_hour"


class DailyRollup(ReadingRollup):
    WIDTH = 86_400

    class Meta:
        db_table = "readings_rollup_day"


class Write(models.Model):
    """One committed write into the relational store and who made it: a file import, a
    WriteReadings call (the HTTP write is one), or one meter's readings of an MQTT batch. Its
    change-log rows point at it, so that who wrote a reading costs a column of those rows, not a
    copy of the name in each."""

    class Channel(models.TextChoices):
        FILE = "file", "File import"
        GRPC = "grpc", "WriteReadings"
        MQTT = "mqtt", "MQTT"

    id = models.BigAutoField(primary_key=True)
    # "user:ann", "key:ab12cd34", "oauth:ann", "device:house-7-main", "command:root", "service".
    written_by = models.CharField(max_length=WRITTEN_BY_MAX_LENGTH)
    channel = models.CharField(max_length=8, choices=Channel.choices)
    committed_at = models.DateTimeField()
    # The meter written, when the write was of one (a write of several names none: see meter_count).
    meter = models.ForeignKey(Meter, on_delete=models.SET_NULL, null=True, blank=True, related_name="writes")
    meter_count = models.PositiveIntegerField(default=1)
    inserted = models.PositiveBigIntegerField(default=0)
    updated = models.PositiveBigIntegerField(default=0)
    unchanged = models.PositiveBigIntegerField(default=0)

    class Meta:
        ordering = ["-id"]
        indexes = [models.Index(fields=["written_by", "-id"], name="write_written_by_idx")]

    def __str__(self) -> str:
        return f"#{self.pk} {self.channel} by {self.written_by}"


class ReadingChange(models.Model):
    """A reading as a write committed it (new, or a new value for its time): the feed that
    WatchReadings serves. Written in the write's transaction while the meter is locked, so within a
    meter the ids follow commit order."""

    id = models.BigAutoField(primary_key=True)
    # No constraint in the database: PostgreSQL checks a deferred foreign key row by row at
    # commit, which doubled the time of a large import. Writes take the meter from its row, and
    # deleting a meter deletes its changes (Django cascades).
    meter = models.ForeignKey(
        Meter, on_delete=models.CASCADE, related_name="changes", db_index=False, db_constraint=False
    )
    time = models.DateTimeField()
    value = models.FloatField()
    # True when the reading replaced another value for its time (a correction).
    replaced = models.BooleanField(default=False)
    committed_at = models.DateTimeField()
    # The write that committed it (who made it). No index and no constraint, as for the meter:
    # every write pays for each; a write's changes are found through its meter.
    write = models.ForeignKey(
        Write, on_delete=models.DO_NOTHING, null=True, blank=True, related_name="changes", db_index=False,
        db_constraint=False,
    )

    class Meta:
        # One index: what a watch reads (a meter's changes after a position). Pruning by time
        # scans, once in a while; every write pays for each index.
        indexes = [models.Index(fields=["meter", "id"], name="readingchange_meter_id_idx")]

    def __str__(self) -> str:
        return f"#{self.pk} {self.meter_id} {self.time.isoformat()} {self.value}"


class RejectedMessage(models.Model):
    """A live message that stored nothing, kept with its reason and then acknowledged, so that it
    never blocks the messages behind it and every message received is accounted for: rejected (not
    JSON, unknown meter, a bad time or value) or skipped (no reading with a value in it)."""

    class Outcome(models.TextChoices):
        REJECTED = "rejected"
        SKIPPED = "skipped"

    received_at = models.DateTimeField(auto_now_add=True)
    outcome = models.CharField(max_length=8, choices=Outcome.choices, default=Outcome.REJECTED)
    channel = models.CharField(max_length=16, default="mqtt")
    topic = models.CharField(max_length=500)
    meter_name = models.CharField(max_length=200, blank=True)
    payload_excerpt = models.TextField(blank=True)
    payload_size = models.PositiveIntegerField(default=0)
    # SHA-256 of the whole payload: a message redelivered after its rejection was committed (the
    # consumer stopped before acknowledging it) is recorded once. The same bad payload sent again
    # on the same topic is, too.
    payload_sha256 = models.CharField(max_length=64, blank=True)
    reason = models.TextField()

    EXCERPT_CHARS = 500

    class Meta:
        ordering = ["-received_at", "-id"]
        indexes = [models.Index(fields=["-received_at"], name="rejectedmessage_received_idx")]
        constraints = [
            models.UniqueConstraint(
                fields=["channel", "topic", "payload_sha256"], condition=~models.Q(payload_sha256=""),
                name="rejectedmessage_once_uniq",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.topic}: {self.reason}"


class ImportRun(models.Model):
    """One run of an import into a store, with its counts and the rows it set aside."""

    class Target(models.TextChoices):
        SQL = "sql", "Relational store"
        INFLUXDB = "influxdb", "InfluxDB"

    class Status(models.TextChoices):
        RUNNING = "running", "Running"
        SUCCEEDED = "succeeded", "Succeeded"
        FAILED = "failed", "Failed"

    # The name is kept apart from the FK: a failed run for a new meter has no Meter row to point at.
    meter_name = models.CharField(max_length=100)
    meter = models.ForeignKey(
        Meter, on_delete=models.SET_NULL, null=True, blank=True, related_name="import_runs"
    )
    target = models.CharField(max_length=16, choices=Target.choices, default=Target.SQL)
    file_name = models.CharField(max_length=500)
    file_size = models.PositiveBigIntegerField(null=True, blank=True)
    file_sha256 = models.CharField(max_length=64, blank=True)
    time_zone = models.CharField(max_length=64)
    dry_run = models.BooleanField(default=False)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.RUNNING)
    started_at = models.DateTimeField(auto_now_add=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    rows_read = models.PositiveBigIntegerField(default=0)
    rows_inserted = models.PositiveBigIntegerField(default=0)
    rows_updated = models.PositiveBigIntegerField(default=0)
    rows_unchanged = models.PositiveBigIntegerField(default=0)
    rows_skipped = models.PositiveBigIntegerField(default=0)
    rows_invalid = models.PositiveBigIntegerField(default=0)
    # Points sent to InfluxDB (an InfluxDB run); a failed run says how far it got.
    points_written = models.PositiveBigIntegerField(default=0)
    # [{"line": 1548, "value": "NaN", "reason": "..."}], capped (see REJECTED_ROWS_KEPT).
    rejected_rows = models.JSONField(default=list, blank=True)
    error = models.TextField(blank=True)
    # Who sent the file, when it came through admin's upload (a command's runs have none).
    uploaded_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="uploads",
    )
    # Who ran it ("user:ann" for an upload, "command:<OS user>" for a command), whatever its outcome;
    # and the write it committed (none for a dry run, a failed run, or a run that staged nothing).
    written_by = models.CharField(max_length=WRITTEN_BY_MAX_LENGTH, blank=True)
    write = models.OneToOneField(
        Write, on_delete=models.SET_NULL, null=True, blank=True, related_name="import_run",
    )

    REJECTED_ROWS_KEPT = 1000

    class Meta:
        ordering = ["-started_at"]
        indexes = [models.Index(fields=["meter", "-started_at"], name="importrun_meter_started_idx")]

    def __str__(self) -> str:
        return f"{self.file_name} → {self.meter_name} ({self.status})"

    @property
    def duration(self):
        return self.finished_at - self.started_at if self.finished_at else None

    def summary(self) -> str:
        """One line of counts, as the import and seed commands print it."""
        skipped = [row for row in self.rejected_rows if row["kind"] == "skipped"]
        detail = ""
        if skipped and len(skipped) == self.rows_skipped and len(skipped) <= 3:
            detail = " (" + ", ".join(f"{row['reason']} at line {row['line']}" for row in skipped) + ")"
        rest = f"{self.rows_skipped} skipped{detail}" + (f", {self.rows_invalid} invalid" if self.rows_invalid else "")
        stored = f"{self.rows_inserted} inserted, {self.rows_updated} updated, {self.rows_unchanged} unchanged"
        if self.target == self.Target.INFLUXDB:
            parts = [f"{self.points_written} points written to InfluxDB"]
            if self.rows_inserted or self.rows_updated or self.rows_unchanged:
                parts.append(f"relational mirror: {stored}")
            return "; ".join([*parts, rest])
        return f"{stored}, {rest}"
