from django.core.management.base import BaseCommand, CommandError
from django.db import transaction

from readings.models import Meter
from readings.sources.sql.rollups import rebuild_rollups


class Command(BaseCommand):
    help = (
        "Recompute the hourly and daily rollups of the relational store from its readings, for every "
        "meter or the ones named: after readings were loaded around the project's writes (a bulk COPY "
        "into the table), or to check them. Every write through the project keeps them itself."
    )

    def add_arguments(self, parser):
        parser.add_argument("--meter", action="append", default=[], help="A meter's name (repeatable; default: every meter).")

    def handle(self, *args, meter, **options):
        ids = list(Meter.objects.filter(name__in=meter).values_list("pk", flat=True)) if meter else None
        if meter and len(ids) != len(set(meter)):
            found = set(Meter.objects.filter(pk__in=ids).values_list("name", flat=True))
            raise CommandError(f"no such meter: {', '.join(sorted(set(meter) - found))}")
        with transaction.atomic():
            rebuild_rollups(ids)
        self.stdout.write(f"Rollups rebuilt for {len(ids) if ids is not None else Meter.objects.count()} meter(s).")
