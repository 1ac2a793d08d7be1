"""Fixtures shared by every app's tests."""
import itertools
import os
import shutil
from pathlib import Path

import pytest

# A real gRPC server over committed data, for the gRPC tests and the HTTP gateway's tests alike.
pytest_plugins = ["grpc_api.tests.fixtures"]

REPO = Path(__file__).resolve().parent
# Servers the tests start as subprocesses (manage.py ...) need a key; pytest itself gets one from
# settings (TESTING).
os.environ.setdefault("DJANGO_SECRET_KEY", "test-only-key-" + "q7Wm2Zr9Xc4Vb8Nt1Ly6Hk3Jd5Gf0Sp" * 2)


def require(reason: str) -> None:
    """Fail in CI, where everything must be there; skip on a developer's machine."""
    if os.environ.get("CI"):
        pytest.fail(reason, pytrace=False)
    pytest.skip(reason)


@pytest.fixture(scope="session")
def reference_csv() -> Path:
    """The reference month, `$METERUSAGE_CSV` (or ../shared/data/meterusage.csv beside the repo)."""
    configured = os.environ.get("METERUSAGE_CSV")
    path = Path(configured) if configured else REPO.parent / "shared" / "data" / "meterusage.csv"
    if not path.is_file():
        require(f"reference data not found at {path}: set METERUSAGE_CSV to meterusage.csv")
    return path


@pytest.fixture
def write_csv(tmp_path):
    """Write bytes or text to a CSV file in a temporary folder and return its path."""

    def write(content: str | bytes, name: str = "meter.csv") -> Path:
        path = tmp_path / name
        path.write_bytes(content.encode() if isinstance(content, str) else content)
        return path

    return write


@pytest.fixture(scope="session")
def influxd(tmp_path_factory):
    """A real influxd on a free loopback port for the whole run (Debian's `influxdb` package)."""
    from readings.tests.influxd import InfluxServer

    if not shutil.which("influxd"):
        require("influxd is not installed: apt-get install -y influxdb (scripts/test does it when it can)")
    server = InfluxServer(tmp_path_factory.mktemp("influxd"))
    server.start()
    yield server
    server.stop()


_databases = itertools.count(1)


@pytest.fixture
def influx_database(influxd, settings):
    """A fresh InfluxDB database for one test, set as settings.INFLUXDB; its name is returned."""
    name = f"test_{next(_databases)}"
    influxd.query(f'CREATE DATABASE "{name}"')
    settings.INFLUXDB = influxd.settings(name)
    yield name
    if influxd.process:
        influxd.query(f'DROP DATABASE "{name}"')
