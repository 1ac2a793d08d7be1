"""The store passes run where they say: on a cluster of testing/pgclusters.py the tests use the
database prepared in it, with the cluster's extension (TimescaleDB, or Citus with its workers
registered in that database), not a plain database made beside it. Skipped elsewhere."""
import pytest
from django.db import connection

pytestmark = [pytest.mark.django_db, pytest.mark.store]


def test_the_test_database_is_the_prepared_one_with_the_extension(pg_cluster):
    with connection.cursor() as cursor:
        cursor.execute("SELECT extname FROM pg_extension")
        extensions = {name for (name,) in cursor.fetchall()}

    assert connection.settings_dict["NAME"] in pg_cluster.databases
    assert pg_cluster.extension in extensions


def test_every_citus_worker_is_registered_in_the_test_database(pg_cluster):
    if pg_cluster.extension != "citus":
        pytest.skip("a TimescaleDB server has no workers")
    with connection.cursor() as cursor:
        cursor.execute("SELECT nodeport FROM pg_dist_node WHERE noderole = 'primary' AND shouldhaveshards")
        ports = sorted(port for (port,) in cursor.fetchall())

    assert ports == sorted(worker.port for worker in pg_cluster.workers)
    assert len(ports) >= 2
