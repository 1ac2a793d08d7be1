from django.core.management.base import BaseCommand, CommandError

from readings.influx import DEFAULT_WRITE_BATCH, InfluxError, InfluxSettings
from readings.management.progress import ProgressBar
from readings.models import Meter
from readings.services import ReadingsImportError, readings_seed_influx, readings_seed_influx_from_db


class Command(BaseCommand):
    help = (
        "Write meter readings to InfluxDB (measurement meter_usage, tag meter, field value), from "
        "CSV files cleaned as import_readings cleans them, or from the relational store (--from-db). "
        "From CSV the relational store is updated too (the mirror), unless --no-mirror. "
        "Seeding again leaves the same points."
    )

    def add_arguments(self, parser):
        parser.add_argument("paths", nargs="*", metavar="PATH", help="CSV file(s) to seed.")
        parser.add_argument("--from-db", action="store_true", help="Seed from the relational store instead of files.")
        parser.add_argument("--meter", help="Meter name (default: each file's name; with --from-db: every meter).")
        parser.add_argument("--tz", dest="time_zone", help="IANA time zone of the files' naive times.")
        parser.add_argument(
            "--batch-size", type=int, default=DEFAULT_WRITE_BATCH,
            help=f"Points per write request (default {DEFAULT_WRITE_BATCH}).",
        )
        parser.add_argument("--create-database", action="store_true", help="Create the database if missing.")
        parser.add_argument("--dry-run", action="store_true", help="Check everything, write nothing.")
        parser.add_argument("--no-mirror", action="store_true", help="Leave the relational store as it is.")

    def handle(self, *args, paths, from_db, meter, time_zone, batch_size, create_database, dry_run, no_mirror, **options):
        if batch_size < 1:
            raise CommandError("--batch-size must be at least 1")
        if from_db == bool(paths):
            raise CommandError("give CSV files to seed, or --from-db (not both)")
        target = InfluxSettings.from_settings()
        try:
            runs = (
                self._from_db(meter, dry_run, create_database, batch_size)
                if from_db
                else self._from_files(paths, meter, time_zone, dry_run, not no_mirror, create_database, batch_size)
            )
            for label, run in runs:
                prefix = "Dry run, nothing written: " if dry_run else ""
                self.stdout.write(self.style.SUCCESS(f"{prefix}{label} → {target.database}@{target.url}, meter '{run.meter_name}': {run.summary()}"))
        except (ReadingsImportError, InfluxError) as exc:
            run = getattr(exc, "run", None)
            written = f" ({run.points_written} points written before it stopped)" if run and run.points_written else ""
            raise CommandError(f"{exc}{written}") from None

    def _from_files(self, paths, meter, time_zone, dry_run, mirror, create_database, batch_size):
        for path in paths:
            progress = ProgressBar(self.stdout, f"Seeding {path}")
            try:
                run = readings_seed_influx(
                    path=path, meter_name=meter, time_zone=time_zone, dry_run=dry_run, mirror=mirror,
                    create_database=create_database, batch_size=batch_size, on_progress=progress,
                )
            finally:
                progress.close()
            yield path, run

    def _from_db(self, meter, dry_run, create_database, batch_size):
        meters = Meter.objects.filter(name=meter) if meter else Meter.objects.all()
        if meter and not meters:
            raise CommandError(f"no meter named {meter!r}")
        for each in meters.order_by("name"):
            yield "relational store", readings_seed_influx_from_db(
                meter=each, dry_run=dry_run, create_database=create_database, batch_size=batch_size
            )
            create_database = False
