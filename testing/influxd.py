"""A throwaway InfluxDB 1.x server on loopback, for the tests and the benchmarks.

Its own config, data and free ports in a temporary folder; authentication on by default, with one
admin user, so that credentials are really checked. Stop and start it again to simulate an
outage: the data stays.
"""
import shutil
import socket
import subprocess
import time
from pathlib import Path

import requests

ADMIN = ("admin", "admin-password")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class InfluxServer:
    def __init__(self, root: Path, *, auth: bool = True, binary: str | None = None):
        self.binary = binary or shutil.which("influxd")
        self.root = root
        self.port = free_port()
        self.rpc_port = free_port()
        self.process: subprocess.Popen | None = None
        self.config = root / "influxdb.conf"
        for folder in ("meta", "data", "wal"):
            (root / folder).mkdir(parents=True, exist_ok=True)
        self.config.write_text(
            "reporting-disabled = true\n"
            f'bind-address = "127.0.0.1:{self.rpc_port}"\n'
            f'[meta]\n  dir = "{root / "meta"}"\n'
            f'[data]\n  dir = "{root / "data"}"\n  wal-dir = "{root / "wal"}"\n  query-log-enabled = false\n'
            f'[http]\n  bind-address = "127.0.0.1:{self.port}"\n  auth-enabled = {str(auth).lower()}\n'
            "  log-enabled = false\n"
            "[monitor]\n  store-enabled = false\n"
            "[continuous_queries]\n  enabled = false\n"
        )

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 15.0) -> None:
        log = (self.root / "influxd.log").open("ab")
        self.process = subprocess.Popen([self.binary, "-config", str(self.config)], stdout=log, stderr=log)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"influxd exited with {self.process.returncode}; see {self.root / 'influxd.log'}")
            try:
                if requests.get(f"{self.url}/ping", timeout=0.5).status_code == 204:
                    break
            except requests.ConnectionError:
                pass
            time.sleep(0.05)
        else:
            self.stop()
            raise RuntimeError(f"influxd did not answer /ping within {timeout}s")
        # The first user may be created without credentials; it fails harmlessly once it exists.
        requests.post(f"{self.url}/query", data={"q": f"CREATE USER {ADMIN[0]} WITH PASSWORD '{ADMIN[1]}' WITH ALL PRIVILEGES"}, timeout=5)

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None

    def query(self, statement: str, database: str | None = None) -> dict:
        params = {"q": statement, "epoch": "s", **({"db": database} if database else {})}
        response = requests.post(f"{self.url}/query", params=params, auth=ADMIN, timeout=10)
        response.raise_for_status()
        return response.json()

    def settings(self, database: str) -> dict:
        """An INFLUXDB setting pointing at this server."""
        return {"URL": self.url, "DATABASE": database, "USERNAME": ADMIN[0], "PASSWORD": ADMIN[1], "TIMEOUT": 10.0}
