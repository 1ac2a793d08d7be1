"""A Citus cluster of the tests' own (a pytest plugin, loaded by conftest.py), started and prepared
by testing/pgclusters.py: a coordinator and two workers once per run, and for each module a
migrated database of its own with Django's default connection pointed at it. Where Citus is not
installed the tests that need it are skipped, except in CI (`CI` set), where they fail
(`testing.helpers.require`).

- `citus_cluster`: the running `pgclusters.Cluster` (session); `cluster.add_worker()` starts one
  more node and registers it in every database prepared on the cluster.
- `citus_database`: a fresh database on it with Citus on every node and the workers registered,
  migrated, Django's default connection pointed at it for the module; yields its `CitusDatabase`.
"""
import itertools
import os
from dataclasses import dataclass
from io import StringIO

import pytest

from testing.helpers import django_database, require
from testing.pgclusters import Cluster, missing, start_citus


@pytest.fixture(scope="session")
def citus_cluster():
    if reason := missing("citus"):
        require(reason)
    cluster = start_citus(database=None, workers=2)
    yield cluster
    cluster.stop()


@dataclass
class CitusDatabase:
    cluster: Cluster
    name: str
    url: str

    def coordinator(self, *statements: str) -> list[tuple]:
        """Run `statements` in one session on the coordinator; the last one's rows."""
        with self.cluster.coordinator.connect(self.name) as connection:
            rows = []
            for statement in statements:
                cursor = connection.execute(statement)
                rows = cursor.fetchall() if cursor.description else []
            return rows


_names = itertools.count(1)


@pytest.fixture(scope="module")
def citus_database(citus_cluster, django_db_blocker):
    """A migrated database of the module's own on the cluster, as Django's default database."""
    from django.core.management import call_command

    name = f"citus_test_{os.getpid()}_{next(_names)}"
    url = citus_cluster.create_database(name)
    with django_db_blocker.unblock(), django_database(url):
        call_command("migrate", verbosity=0, stdout=StringIO())
        yield CitusDatabase(citus_cluster, name, url)
