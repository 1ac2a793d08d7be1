from django.core.management.base import BaseCommand, CommandError

from readings.management.progress import ProgressBar, add_ambiguous_argument
from readings.models import Meter
from readings.sources import readings_sources
from readings.writes.imports import (
    ReadingsImportError,
    command_author,
    readings_seed,
    readings_seed_from_db,
    series_store_alias,
)
from readings.writes.rows import Ambiguous


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
        add_ambiguous_argument(parser)
        parser.add_argument(
            "--source",
            help="READINGS_SOURCES alias of the InfluxDB to write to, with its OPTIONS "
            "(default: the only such alias).",
        )
        parser.add_argument(
            "--batch-size", type=int, help="Points per write request (default: the source's WRITE_BATCH, 5000)."
        )
        parser.add_argument("--create-database", action="store_true", help="Create the database if missing.")
        parser.add_argument("--dry-run", action="store_true", help="Check everything, write nothing.")
        parser.add_argument("--no-mirror", action="store_true", help="Leave the relational store as it is.")

    def handle(self, *args, paths, from_db, meter, time_zone, ambiguous, source, batch_size, create_database, dry_run, no_mirror, **options):
        if batch_size is not None and batch_size < 1:
            raise CommandError("--batch-size must be at least 1")
        if from_db == bool(paths):
            raise CommandError("give CSV files to seed, or --from-db (not both)")
        write = {
            "source_alias": source, "dry_run": dry_run, "create_database": create_database, "batch_size": batch_size,
            "written_by": command_author(),
        }
        try:
            target = readings_sources[series_store_alias(source)]
            read = {"meter_name": meter, "time_zone": time_zone, "ambiguous": Ambiguous(ambiguous), "mirror": not no_mirror}
            runs = self._from_db(meter, write) if from_db else self._from_files(paths, read, write)
            for label, run in runs:
                prefix = "Dry run, nothing written: " if dry_run else ""
                self.stdout.write(self.style.SUCCESS(f"{prefix}{label} → {target}, meter '{run.meter_name}': {run.summary()}"))
        except ReadingsImportError as exc:
            run = exc.run
            written = f" ({run.points_written} points written before it stopped)" if run and run.points_written else ""
            raise CommandError(f"{exc}{written}") from None

    def _from_files(self, paths, read, write):
        for path in paths:
            progress = ProgressBar(self.stdout, f"Seeding {path}")
            try:
                run = readings_seed(path=path, on_progress=progress, **read, **write)
            finally:
                progress.close()
            yield path, run

    def _from_db(self, meter, write):
        meters = Meter.objects.filter(name=meter) if meter else Meter.objects.all()
        if meter and not meters:
            raise CommandError(f"no meter named {meter!r}")
        for each in meters.order_by("name"):
            yield "relational store", readings_seed_from_db(meter=each, **write)
            write["create_database"] = False
