"""A TimescaleDB server of the tests' own (PostgreSQL 15 with the extension preloaded), made with
initdb in a temporary folder and started on a free loopback port, as the `postgres` user when
run as root; and the Django default database pointed at a database in it for a while.

TimescaleDB must be first in `shared_preload_libraries`, so it gets a server of its own, never the
machine's PostgreSQL. Its background jobs (the refresh and compression policies) are off: tests
refresh and compress when they mean to.
"""
import os
import shutil
import subprocess
import tempfile
from contextlib import contextmanager
from pathlib import Path

from django.db import connections

from testing.influxd import free_port

BIN = Path("/usr/lib/postgresql/15/bin")
LIBRARY = BIN.parent / "lib" / "timescaledb.so"


def missing() -> str:
    """Why a TimescaleDB server cannot be started here ("" when it can)."""
    if not (BIN / "initdb").exists():
        return f"no PostgreSQL 15 binaries in {BIN}"
    if not LIBRARY.exists():
        return f"TimescaleDB is not installed into PostgreSQL 15 ({LIBRARY}; ../shared/pg-extensions/build timescaledb)"
    return ""


class TimescaleServer:
    def __init__(self):
        self.folder = Path(tempfile.mkdtemp(prefix="ts_cluster_"))
        self.port = free_port()

    def _run(self, *command: str) -> None:
        if os.geteuid() == 0:
            command = ("runuser", "-u", "postgres", "--", *command)
        subprocess.run(command, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, timeout=120)

    def start(self) -> "TimescaleServer":
        if os.geteuid() == 0:
            shutil.chown(self.folder, "postgres")
        self.folder.chmod(0o755)
        data = self.folder / "data"
        self._run(str(BIN / "initdb"), "-D", str(data), "-A", "trust", "-U", "postgres", "--no-sync")
        options = (
            f"-p {self.port} -k {self.folder} -c listen_addresses=127.0.0.1 -c shared_preload_libraries=timescaledb "
            "-c timescaledb.telemetry_level=off -c timescaledb.max_background_workers=0 -c fsync=off "
            "-c synchronous_commit=off -c full_page_writes=off"
        )
        self._run(str(BIN / "pg_ctl"), "-D", str(data), "-w", "-l", str(self.folder / "log"), "-o", options, "start")
        return self

    def stop(self) -> None:
        try:
            self._run(str(BIN / "pg_ctl"), "-D", str(self.folder / "data"), "-m", "immediate", "stop")
        finally:
            shutil.rmtree(self.folder, ignore_errors=True)

    def create_database(self, name: str) -> None:
        """A database with the extension made in it (before any migration runs)."""
        import psycopg

        with psycopg.connect(host="127.0.0.1", port=self.port, user="postgres", dbname="postgres", autocommit=True) as c:
            c.execute(f'CREATE DATABASE "{name}"')
        with psycopg.connect(host="127.0.0.1", port=self.port, user="postgres", dbname=name, autocommit=True) as c:
            c.execute("CREATE EXTENSION timescaledb")


@contextmanager
def default_database_on(server: TimescaleServer, name: str):
    """Point Django's default database at `name` on `server`, then back at what it was."""
    saved = connections.settings["default"]
    connections["default"].close()
    connections.settings["default"] = connections.configure_settings(
        {"default": {"ENGINE": "django.db.backends.postgresql", "NAME": name, "USER": "postgres",
                     "HOST": "127.0.0.1", "PORT": str(server.port)}}
    )["default"]
    del connections["default"]
    try:
        yield
    finally:
        connections["default"].close()
        connections.settings["default"] = saved
        del connections["default"]
