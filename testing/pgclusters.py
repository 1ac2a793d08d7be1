"""Throwaway PostgreSQL servers on loopback with TimescaleDB or Citus loaded, for the tests and the
benchmarks: one server for TimescaleDB, a coordinator and workers for Citus.

Neither extension can share a server with the other (each must be first in
`shared_preload_libraries`), so the machine's own PostgreSQL serves neither: each cluster lives in
a temporary folder of its own (data directories, sockets, logs and `cluster.json`, which names the
nodes), runs as the `postgres` user when started by root, on free loopback ports, and is tuned
for throwaway data (no fsync, no synchronous commit, no full-page writes). A database is prepared
in it with the extension created (on every node for Citus, whose metadata is per database, with
the coordinator and the workers registered), and its URL is what DATABASE_URL takes.

    python -m testing.pgclusters check timescaledb|citus
    python -m testing.pgclusters start timescaledb [--database NAME] [--root DIR]
    python -m testing.pgclusters start citus [--workers 2] [--database NAME] [--root DIR]
    python -m testing.pgclusters add-worker DIR
    python -m testing.pgclusters stop DIR

`start` prints the database's URL and leaves the servers running; `stop` stops them and removes
the folder. From Python: `start_timescaledb()`, `start_citus()`, `Cluster.add_worker()`,
`Cluster.stop()`, and `cluster_of(url)` for the cluster serving a database URL.
"""
import argparse
import json
import os
import pwd
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import psycopg

PG_VERSION = "15"
PG_BIN = Path(f"/usr/lib/postgresql/{PG_VERSION}/bin")
PG_LIB = Path(f"/usr/lib/postgresql/{PG_VERSION}/lib")
PG_EXTENSIONS = Path(f"/usr/share/postgresql/{PG_VERSION}/extension")
BUILD = "../shared/pg-extensions/build"
NAMES = {"timescaledb": "TimescaleDB", "citus": "Citus"}
STATE = "cluster.json"

# Settings of every node: throwaway data (a crash loses it, which is fine here), room for the
# connections of a test run's servers and, on Citus, the coordinator's connections to its workers.
TUNING = {
    "listen_addresses": "127.0.0.1",
    "fsync": "off",
    "synchronous_commit": "off",
    "full_page_writes": "off",
    "max_connections": "300",
    "max_locks_per_transaction": "256",
    "max_worker_processes": "16",
    "log_min_messages": "warning",
}
EXTENSION_SETTINGS = {
    "timescaledb": {"timescaledb.telemetry_level": "off"},
    # Nodes talk over loopback: no TLS between them (nor the certificate Citus would make for it).
    "citus": {"citus.node_conninfo": "sslmode=disable"},
}


class ClusterError(RuntimeError):
    """A cluster could not be started or prepared; the message says what is missing or failed."""


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def missing(extension: str) -> str | None:
    """Why `extension` cannot be loaded by PostgreSQL here, or None when it can."""
    if extension not in NAMES:
        return f"unknown extension {extension!r} (timescaledb or citus)"
    if not (PG_BIN / "initdb").exists():
        return f"the PostgreSQL {PG_VERSION} server is not installed ({PG_BIN / 'initdb'} is missing): apt-get install postgresql-{PG_VERSION}"
    for path in (PG_EXTENSIONS / f"{extension}.control", PG_LIB / f"{extension}.so"):
        if not path.exists():
            return (f"{NAMES[extension]} is not installed into PostgreSQL {PG_VERSION} ({path} is missing): "
                    f"{BUILD} (as root) builds and installs it")
    return None


def _as_server_user() -> dict:
    """initdb and postgres refuse root: as root, run them as `postgres`, with its own home (libpq
    looks for client certificates there when a Citus node connects to another)."""
    if os.geteuid() != 0:
        return {}
    home = pwd.getpwnam("postgres").pw_dir
    return {"user": "postgres", "group": "postgres", "extra_groups": [], "env": {**os.environ, "HOME": home}}


def _run(args: list, *, cwd: Path) -> None:
    done = subprocess.run([str(a) for a in args], cwd=cwd, stdin=subprocess.DEVNULL, capture_output=True, text=True,
                          **_as_server_user())
    if done.returncode != 0:
        raise ClusterError(f"{Path(args[0]).name} failed ({done.returncode}): {(done.stderr or done.stdout).strip()[-2000:]}")


@dataclass
class Node:
    """One PostgreSQL server of a cluster: its data directory and port."""

    data: Path
    port: int

    @property
    def log(self) -> Path:
        return self.data.with_suffix(".log")

    def url(self, database: str) -> str:
        return f"postgres://postgres@127.0.0.1:{self.port}/{database}"

    def connect(self, database: str = "postgres") -> psycopg.Connection:
        return psycopg.connect(host="127.0.0.1", port=self.port, user="postgres", dbname=database, autocommit=True,
                               connect_timeout=10)

    def execute(self, statement: str, database: str = "postgres", params=None) -> list[tuple]:
        with self.connect(database) as connection:
            cursor = connection.execute(statement, params)
            return cursor.fetchall() if cursor.description else []

    def start(self, settings: dict[str, str], attempts: int = 3) -> None:
        """Start the server and wait until it accepts connections; another free port if its port
        was taken meanwhile."""
        for attempt in range(attempts):
            options = {**settings, "port": str(self.port), "unix_socket_directories": str(self.data.parent)}
            flags = " ".join(f"-c {key}={value}" for key, value in options.items())
            try:
                _run([PG_BIN / "pg_ctl", "start", "-D", self.data, "-l", self.log, "-w", "-t", "60", "-o", flags],
                     cwd=self.data.parent)
                return
            except ClusterError as error:
                log = self.log.read_text(errors="replace") if self.log.exists() else ""
                if "could not bind" in log and attempt + 1 < attempts:
                    self.port = free_port()
                    continue
                raise ClusterError(f"{error}\n{self.log}:\n{log[-2000:]}") from None

    def stop(self) -> None:
        if (self.data / "postmaster.pid").exists():
            _run([PG_BIN / "pg_ctl", "stop", "-D", self.data, "-m", "immediate", "-w"], cwd=self.data.parent)


@dataclass
class Cluster:
    """A TimescaleDB server, or a Citus coordinator (nodes[0]) and its workers, in `root`."""

    root: Path
    extension: str
    nodes: list[Node]
    databases: list[str] = field(default_factory=list)

    @property
    def coordinator(self) -> Node:
        return self.nodes[0]

    @property
    def workers(self) -> list[Node]:
        return self.nodes[1:]

    def url(self, database: str | None = None) -> str:
        """The URL of `database` (the first prepared one by default) on the node clients use."""
        return self.coordinator.url(database or self.databases[0])

    @property
    def settings(self) -> dict[str, str]:
        return {**TUNING, "shared_preload_libraries": self.extension, **EXTENSION_SETTINGS[self.extension]}

    def save(self) -> None:
        state = {"extension": self.extension, "databases": self.databases,
                 "nodes": [{"data": str(node.data), "port": node.port} for node in self.nodes]}
        (self.root / STATE).write_text(json.dumps(state, indent=2) + "\n")

    @classmethod
    def load(cls, root: Path | str) -> "Cluster":
        root = Path(root)
        try:
            state = json.loads((root / STATE).read_text())
        except FileNotFoundError:
            raise ClusterError(f"no cluster in {root} (no {STATE})") from None
        return cls(root, state["extension"], [Node(Path(n["data"]), n["port"]) for n in state["nodes"]], state["databases"])

    def create_database(self, name: str) -> str:
        """A database with the extension created (Citus: on every node, the nodes registered in
        it); its URL is returned."""
        self._prepare(name, self.nodes)
        if self.extension == "citus":
            self.coordinator.execute("SELECT citus_set_coordinator_host('127.0.0.1', %s)", name, [self.coordinator.port])
            for worker in self.workers:
                self.coordinator.execute("SELECT citus_add_node('127.0.0.1', %s)", name, [worker.port])
        self.databases.append(name)
        self.save()
        return self.url(name)

    def _prepare(self, name: str, nodes: list[Node]) -> None:
        def prepare(node: Node) -> None:
            node.execute(f'CREATE DATABASE "{name}"')
            node.execute(f"CREATE EXTENSION {self.extension}", name)

        _each(prepare, nodes)

    def add_worker(self) -> Node:
        """Start one more Citus worker and register it in every prepared database (its shards
        stay where they are until rebalanced: `SELECT citus_rebalance_start()`)."""
        if self.extension != "citus":
            raise ClusterError(f"workers are a Citus thing; this cluster loads {self.extension}")
        node = Node(self.root / f"worker{len(self.nodes)}", free_port())
        _initdb(node.data)
        node.start(self.settings)
        self.nodes.append(node)
        self.save()
        for name in self.databases:
            self._prepare(name, [node])
            self.coordinator.execute("SELECT citus_add_node('127.0.0.1', %s)", name, [node.port])
        return node

    def stop(self, *, remove: bool = True) -> None:
        """Stop every node at once (the data is thrown away) and remove the folder."""
        _each(Node.stop, self.nodes)
        if remove:
            shutil.rmtree(self.root, ignore_errors=True)


def _each(function, nodes: list[Node]) -> None:
    """`function(node)` for every node at the same time (the servers do the work, not Python)."""
    with ThreadPoolExecutor(max_workers=max(1, len(nodes))) as pool:
        for result in [pool.submit(function, node) for node in nodes]:
            result.result()


def _initdb(data: Path) -> None:
    # -N: no fsync of the new files (a throwaway cluster); the C.UTF-8 locale as in Debian's clusters.
    _run([PG_BIN / "initdb", "-D", data, "-A", "trust", "-U", "postgres", "-N", "--no-instructions",
          "-E", "UTF8", "--locale=C.UTF-8"], cwd=data.parent)


def _make_root(root: Path | str | None, extension: str) -> Path:
    root = Path(root) if root else Path(tempfile.mkdtemp(prefix=f"pgcluster-{extension}-"))
    root.mkdir(parents=True, exist_ok=True)
    if any(root.iterdir()):
        raise ClusterError(f"{root} is not empty")
    if os.geteuid() == 0:
        shutil.chown(root, "postgres", "postgres")
    root.chmod(0o755)  # the server user writes here; the tests (root) read the logs
    return root


def start_cluster(extension: str, *, workers: int = 0, database: str | None = "meterusage",
                  root: Path | str | None = None) -> Cluster:
    """Start a cluster loading `extension` (a coordinator and `workers` workers for Citus, one
    server otherwise) and prepare `database` in it (none if None)."""
    problem = missing(extension)
    if problem:
        raise ClusterError(problem)
    root = _make_root(root, extension)
    names = ["coordinator", *(f"worker{i}" for i in range(1, workers + 1))] if extension == "citus" else ["server"]
    cluster = Cluster(root, extension, [Node(root / name, free_port()) for name in names])
    try:
        # One initdb, copied for the other nodes: a copy takes a fraction of an initdb.
        _initdb(cluster.nodes[0].data)
        _each(lambda node: _run(["cp", "-a", cluster.nodes[0].data, node.data], cwd=root), cluster.nodes[1:])
        cluster.save()
        _each(lambda node: node.start(cluster.settings), cluster.nodes)
        if database:
            cluster.create_database(database)
    except BaseException:
        cluster.stop()
        raise
    return cluster


def start_timescaledb(database: str | None = "meterusage", *, root: Path | str | None = None) -> Cluster:
    """One PostgreSQL server with TimescaleDB loaded, `database` prepared in it."""
    return start_cluster("timescaledb", database=database, root=root)


def start_citus(database: str | None = "meterusage", *, workers: int = 2, root: Path | str | None = None) -> Cluster:
    """A Citus coordinator and `workers` workers, `database` prepared on all of them."""
    return start_cluster("citus", workers=workers, database=database, root=root)


def cluster_of(url: str) -> Cluster:
    """The cluster (started by this module) whose server answers at the database URL `url`."""
    with psycopg.connect(url, connect_timeout=10) as connection:
        data = Path(connection.execute("SHOW data_directory").fetchone()[0])
    return Cluster.load(data.parent)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m testing.pgclusters", description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    check = commands.add_parser("check", help="exit 0 if the extension can be loaded, else say why")
    check.add_argument("extension", choices=NAMES)
    start = commands.add_parser("start", help="start a cluster, prepare a database, print its URL")
    start.add_argument("extension", choices=NAMES)
    start.add_argument("--workers", type=int, default=2, help="Citus workers (default 2)")
    start.add_argument("--database", default="meterusage", help="the database to prepare (default meterusage)")
    start.add_argument("--root", help="an empty folder for the cluster (default: a new temporary one)")
    add = commands.add_parser("add-worker", help="start one more Citus worker and register it")
    add.add_argument("root")
    stop = commands.add_parser("stop", help="stop a cluster and remove its folder")
    stop.add_argument("root")
    args = parser.parse_args(argv)

    try:
        if args.command == "check":
            problem = missing(args.extension)
            if problem:
                print(problem, file=sys.stderr)
                return 1
        elif args.command == "start":
            began = time.monotonic()
            cluster = start_cluster(args.extension, workers=args.workers if args.extension == "citus" else 0,
                                    database=args.database, root=args.root)
            ports = ", ".join(str(node.port) for node in cluster.nodes)
            print(f"{NAMES[args.extension]}: {len(cluster.nodes)} node(s) on 127.0.0.1 ports {ports}, in {cluster.root}, "
                  f"started in {time.monotonic() - began:.1f}s; stop with: python -m testing.pgclusters stop {cluster.root}",
                  file=sys.stderr)
            print(cluster.url())
        elif args.command == "add-worker":
            node = Cluster.load(args.root).add_worker()
            print(f"worker on 127.0.0.1:{node.port}", file=sys.stderr)
        elif args.command == "stop":
            Cluster.load(args.root).stop()
    except ClusterError as error:
        print(error, file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
