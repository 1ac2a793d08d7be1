from datetime import timedelta

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from readings.writes.changes import prune_changes


class Command(BaseCommand):
    help = (
        "Delete reading changes older than CHANGE_LOG_DAYS (or --days) from the change log that "
        "WatchReadings serves. Watches resuming from before what is kept are told to re-read."
    )

    def add_arguments(self, parser):
        parser.add_argument(
            "--days", type=float, default=settings.CHANGE_LOG_DAYS,
            help=f"Keep changes of the last DAYS days (default CHANGE_LOG_DAYS, {settings.CHANGE_LOG_DAYS:g}).",
        )

    def handle(self, *args, days, **options):
        if days < 0:
            raise CommandError("--days cannot be negative")
        deleted = prune_changes(older_than=timedelta(days=days))
        self.stdout.write(f"{deleted} changes older than {days:g} days deleted.")
