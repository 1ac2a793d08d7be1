"""The tiers' imports point one way: gateway → grpc_api → readings, never back.

Read from the source with `ast`, so an import inside a function counts as much as one at the top.
"""
import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]

# Each tier and the packages it must never import.
FORBIDDEN = {
    "readings": {"grpc_api", "gateway"},
    "grpc_api": {"gateway"},
}


def imported_packages(source: str) -> set[str]:
    """The top-level packages a module's source imports, wherever the import stands."""
    found = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found.update(alias.name.partition(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.add(node.module.partition(".")[0])
    return found


def wrong_way_imports(tier: str) -> list[str]:
    return [
        f"{path.relative_to(REPO)} imports {package}"
        for path in sorted((REPO / tier).rglob("*.py"))
        for package in sorted(imported_packages(path.read_text()) & FORBIDDEN[tier])
    ]


@pytest.mark.parametrize("tier", sorted(FORBIDDEN))
def test_a_tier_imports_only_the_tiers_below_it(tier):
    assert wrong_way_imports(tier) == []


def test_an_import_inside_a_function_counts():
    source = "import os\n\ndef later():\n    from gateway.client import call\n    import grpc_api.server\n"
    assert imported_packages(source) == {"os", "gateway", "grpc_api"}


def test_relative_imports_stay_inside_their_package():
    assert imported_packages("from . import models\nfrom .sources import sql\n") == set()
