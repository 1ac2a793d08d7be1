from django.core.management.base import BaseCommand, CommandError

from readings.csvreader import DEFAULT_BATCH_SIZE
from readings.management.progress import ProgressBar, add_ambiguous_argument
from readings.models import Meter
from readings.writes.imports import ReadingsImportError, command_author, readings_import
from readings.writes.rows import Ambiguous


class Command(BaseCommand):
    help = (
        "Import CSV files of meter readings (header 'time,meterusage') into the relational store. "
        "Readings are upserted by (meter, time): importing a file again changes nothing."
    )

    def add_arguments(self, parser):
        parser.add_argument("paths", nargs="+", metavar="PATH", help="CSV file(s) to import.")
        parser.add_argument(
            "--meter", help="Meter to import into (created if missing); default: the file's name."
        )
        parser.add_argument(
            "--tz",
            dest="time_zone",
            help="IANA time zone of the file's naive times; default: the meter's zone, else UTC.",
        )
        parser.add_argument(
            "--account", help="Account that owns the meter: a new meter is made its (see `manage.py account add`)."
        )
        parser.add_argument(
            "--public", action="store_true",
            help="Mark the meter public: anyone may read its readings, signed in or not.",
        )
        add_ambiguous_argument(parser)
        parser.add_argument(
            "--dry-run", action="store_true", help="Read and count everything, then roll back."
        )
        parser.add_argument(
            "--batch-size",
            type=int,
            default=DEFAULT_BATCH_SIZE,
            help=f"Rows read and staged at a time (default {DEFAULT_BATCH_SIZE}).",
        )

    def handle(self, *args, paths, meter, time_zone, ambiguous, dry_run, batch_size, account, public, **options):
        if batch_size < 1:
            raise CommandError("--batch-size must be at least 1")
        verbosity = options["verbosity"]
        written_by = command_author()  # recorded in each run and the write it commits
        for path in paths:
            progress = ProgressBar(self.stdout, f"Importing {path}")
            try:
                run = readings_import(
                    path=path,
                    meter_name=meter,
                    time_zone=time_zone,
                    ambiguous=Ambiguous(ambiguous),
                    dry_run=dry_run,
                    batch_size=batch_size,
                    on_progress=progress,
                    account=account,
                    written_by=written_by,
                )
            except ReadingsImportError as exc:
                raise CommandError(str(exc)) from None
            finally:
                progress.close()
            if public and not dry_run:
                Meter.objects.filter(name=run.meter_name).update(public=True)
            if verbosity >= 2:
                for row in run.rejected_rows:
                    self.stdout.write(f"  line {row['line']}: {row['reason']} ({row['kind']})")
            if verbosity >= 1:
                prefix = "Dry run, nothing saved: " if dry_run else ""
                self.stdout.write(
                    self.style.SUCCESS(f"{prefix}{path} → meter '{run.meter_name}': {run.summary()}")
                )
