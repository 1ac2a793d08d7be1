from datetime import date
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from readings.generate import generated_file_paths, synthetic_readings, write_readings_csv


class Command(BaseCommand):
    help = (
        "Write deterministic synthetic 15-minute readings as CSV files in the import format "
        "(one file per meter), for demos and benchmarks."
    )

    def add_arguments(self, parser):
        parser.add_argument("--meters", type=int, default=1, help="How many meters (default 1).")
        parser.add_argument("--days", type=int, required=True, help="Days of readings per meter.")
        parser.add_argument(
            "--start", type=date.fromisoformat, default=date(2019, 1, 1),
            help="First day, YYYY-MM-DD (default 2019-01-01).",
        )
        parser.add_argument("--seed", type=int, default=0, help="Random seed (default 0).")
        parser.add_argument(
            "--tz", dest="time_zone", default="UTC",
            help="IANA zone whose wall clock the times are written in (default UTC); import with the same --tz.",
        )
        parser.add_argument(
            "--out", type=Path, default=Path("generated.csv"),
            help="File to write; with several meters, OUT-001.csv, OUT-002.csv, ... (default generated.csv).",
        )

    def handle(self, *args, meters, days, start, seed, out, time_zone, **options):
        if meters < 1 or days < 1:
            raise CommandError("--meters and --days must be at least 1")
        rows = 0
        for index, path in enumerate(generated_file_paths(out, meters)):
            times, values = synthetic_readings(
                days=days, start=start, seed=seed, meter_index=index, time_zone=time_zone
            )
            write_readings_csv(path, times, values)
            rows += len(times)
            if options["verbosity"] >= 2:
                self.stdout.write(f"{path}: {len(times)} readings")
        self.stdout.write(self.style.SUCCESS(f"Wrote {rows} readings for {meters} meter(s) to {out.parent}/"))
