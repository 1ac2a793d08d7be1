"""A TimescaleDB server of a test module's own (a pytest plugin, loaded by conftest.py), started by
testing/pgclusters.py with its background jobs off: tests refresh and compress when they mean to.
Where TimescaleDB is not installed the tests that need it are skipped, except in CI (`CI` set),
where they fail (`testing.helpers.require`).

- `timescaledb_server`: the running `pgclusters.Cluster` (module), no database in it yet:
  `server.create_database(name)` makes one with the extension and returns its URL, and
  `testing.helpers.django_database(url)` points Django's default connection at it.
"""
import pytest

from testing.helpers import require
from testing.pgclusters import missing, start_timescaledb

# The refresh and compression policies' jobs never run by themselves.
NO_BACKGROUND_JOBS = {"timescaledb.max_background_workers": "0"}


@pytest.fixture(scope="module")
def timescaledb_server():
    if reason := missing("timescaledb"):
        require(reason)
    server = start_timescaledb(database=None, settings=NO_BACKGROUND_JOBS)
    yield server
    server.stop()
