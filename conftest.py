"""Fixtures shared by every app's tests."""
import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent


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
