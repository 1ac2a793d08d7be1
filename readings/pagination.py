"""Pagination that stays fast on tables of millions of rows."""
import json

from django.core.paginator import Paginator
from django.db import DatabaseError, connections, transaction
from django.utils.functional import cached_property

EXACT_COUNT_TIMEOUT_MS = 200


class EstimatedCountPaginator(Paginator):
    """Counts exactly when that takes under EXACT_COUNT_TIMEOUT_MS, else asks PostgreSQL's planner.

    A page of readings is an index scan; the COUNT(*) Django's paginator runs beside it is a
    scan of every matching row, which on a large table costs far more than the page itself.
    """

    @cached_property
    def count(self) -> int:
        queryset = self.object_list
        connection = connections[queryset.db]
        if connection.vendor != "postgresql":
            return super().count
        try:
            with transaction.atomic(using=queryset.db), connection.cursor() as cursor:
                cursor.execute(
                    "SELECT current_setting('statement_timeout'), set_config('statement_timeout', %s, true)",
                    [str(EXACT_COUNT_TIMEOUT_MS)],
                )
                previous = cursor.fetchone()[0]
                count = queryset.count()
                cursor.execute("SELECT set_config('statement_timeout', %s, true)", [previous])
                return count
        except DatabaseError:
            plan = json.loads(queryset.explain(format="json"))
            return int(plan[0]["Plan"]["Plan Rows"])
