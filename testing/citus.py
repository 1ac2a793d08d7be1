"""A Citus cluster of the tests' own (a pytest plugin, loaded by conftest.py): a coordinator and
two workers started once per run, each database prepared on every node, and Django's database
pointed at one of them for a module.

Citus is loaded at start (`shared_preload_libraries`), so the machine's PostgreSQL cannot serve:
each node is an `initdb` of a temporary folder, run as the `postgres` user when the tests run as
root, on a free loopback port, tuned for throwaway data. Where Citus is not installed the tests
that need it are skipped, except in CI (`CI` set), where they fail (`testing.helpers.require`).

- `citus_cluster`: the running cluster (session); `cluster.add_worker()` starts one more node.
- `citus_database`: a fresh database on it with Citus on every node and the workers registered,
  migrated, Django's default connection pointed at it for the module; yields its `CitusDatabase`.
"""
import itertools
import os
import shutil
import subprocess
import tempfile
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from io import StringIO
from pathlib import Path

import psycopg
import pytest

from testing.helpers import require
from testing.influxd import free_port

PG_BIN = Path("/usr/lib/postgresql/15/bin")
CITUS_LIBRARY = Path("/usr/lib/postgresql/15/lib/citus.so")
SETTINGS = {
    "listen_addresses": "127.0.0.1",
    "shared_preload_libraries": "citus",
    "fsync": "off",
    "synchronous_commit": "off",
    "full_page_writes": "off",
    "max_connections": "200",
    "citus.node_conninfo": "sslmode=disable",
}


def citus_missing() -> str | None:
    """Why a Citus cluster cannot be started here, or None."""
    if not (PG_BIN / "initdb").exists():
        return f"PostgreSQL 15's server is not installed ({PG_BIN / 'initdb'})"
    if not CITUS_LIBRARY.exists():
        return f"Citus is not installed ({CITUS_LIBRARY}): run ../shared/pg-extensions/build citus as root"
    return None


def _as_postgres(command: list[str]) -> list[str]:
    if os.geteuid() != 0:
        return command
    return ["su", "postgres", "-c", " ".join(f"'{part}'" for part in command)]


@dataclass
class Node:
    folder: Path
    port: int

    def start(self) -> None:
        self.folder.mkdir(parents=True)
        if os.geteuid() == 0:
            shutil.chown(self.folder, "postgres")
        data = self.folder / "data"
        subprocess.run(_as_postgres([str(PG_BIN / "initdb"), "-D", str(data), "-A", "trust", "-U", "postgres"]),
                       check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        options = " ".join(f"-c {name}={value}" for name, value in SETTINGS.items())
        subprocess.run(
            _as_postgres([str(PG_BIN / "pg_ctl"), "-D", str(data), "-w", "-l", str(self.folder / "log"),
                          "-o", f"-p {self.port} -k {self.folder} {options}", "start"]),
            check=True, stdout=subprocess.DEVNULL,
        )

    def stop(self) -> None:
        subprocess.run(_as_postgres([str(PG_BIN / "pg_ctl"), "-D", str(self.folder / "data"), "-m", "immediate", "stop"]),
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def url(self, database: str) -> str:
        return f"postgres://postgres@127.0.0.1:{self.port}/{database}"

    def execute(self, database: str, *statements: str) -> list[tuple]:
        with psycopg.connect(self.url(database), autocommit=True) as connection:
            rows = []
            for statement in statements:
                cursor = connection.execute(statement)
                rows = cursor.fetchall() if cursor.description else []
            return rows


@dataclass
class CitusCluster:
    folder: Path
    coordinator: Node
    workers: list[Node] = field(default_factory=list)

    @classmethod
    def start(cls, folder: Path, workers: int = 2) -> "CitusCluster":
        folder.chmod(0o755)
        cluster = cls(folder, Node(folder / "coordinator", free_port()))
        cluster.workers = [Node(folder / f"worker{i}", free_port()) for i in range(1, workers + 1)]
        with ThreadPoolExecutor(workers + 1) as pool:
            list(pool.map(Node.start, [cluster.coordinator, *cluster.workers]))
        return cluster

    def add_worker(self) -> Node:
        """Start one more node (not yet in any database's cluster: citus_add_node does that)."""
        node = Node(self.folder / f"worker{len(self.workers) + 1}", free_port())
        node.start()
        self.workers.append(node)
        return node

    def prepare(self, database: str) -> str:
        """A fresh `database` with Citus on every node, the coordinator and the workers
        registered (Citus keeps its metadata per database); returns its URL."""
        for node in [self.coordinator, *self.workers]:
            node.execute("postgres", f"DROP DATABASE IF EXISTS {database} WITH (FORCE)", f"CREATE DATABASE {database}")
            node.execute(database, "CREATE EXTENSION citus")
        self.coordinator.execute(database, f"SELECT citus_set_coordinator_host('127.0.0.1', {self.coordinator.port})")
        for worker in self.workers:
            self.coordinator.execute(database, f"SELECT citus_add_node('127.0.0.1', {worker.port})")
        return self.coordinator.url(database)

    def stop(self) -> None:
        for node in [*self.workers, self.coordinator]:
            node.stop()


@pytest.fixture(scope="session")
def citus_cluster():
    if (reason := citus_missing()) is not None:
        require(reason)
    # Not under pytest's own temporary folder: the postgres user could not reach into it.
    folder = Path(tempfile.mkdtemp(prefix="meterusage-citus-"))
    cluster = CitusCluster.start(folder)
    yield cluster
    cluster.stop()
    shutil.rmtree(folder, ignore_errors=True)


@contextmanager
def django_database(url: str):
    """Django's default database is `url` meanwhile (every thread's new connections included)."""
    import dj_database_url
    from django.db import connections

    before = connections.settings["default"]
    connections.close_all()
    connections.settings["default"] = connections.configure_settings(
        {"default": dj_database_url.parse(url, conn_max_age=0)}
    )["default"]
    _forget_connection(connections)
    try:
        yield
    finally:
        connections.close_all()
        connections.settings["default"] = before
        _forget_connection(connections)


def _forget_connection(connections) -> None:
    """Drop this thread's connection object, made with the settings before (if any)."""
    try:
        del connections["default"]
    except AttributeError:
        pass


@dataclass
class CitusDatabase:
    cluster: CitusCluster
    name: str
    url: str

    def coordinator(self, *statements: str) -> list[tuple]:
        return self.cluster.coordinator.execute(self.name, *statements)


_names = itertools.count(1)


@pytest.fixture(scope="module")
def citus_database(citus_cluster, django_db_blocker):
    """A migrated database of the module's own on the cluster, as Django's default database."""
    from django.core.management import call_command

    name = f"citus_test_{os.getpid()}_{next(_names)}"
    url = citus_cluster.prepare(name)
    with django_db_blocker.unblock(), django_database(url):
        call_command("migrate", verbosity=0, stdout=StringIO())
        yield CitusDatabase(citus_cluster, name, url)

