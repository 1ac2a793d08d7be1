"""The dashboard page as served: local assets only, the API's URLs, the vendored chart library."""
import json
import re
from pathlib import Path

import pytest

pytestmark = pytest.mark.django_db

REPO = Path(__file__).resolve().parents[2]


def test_dashboard_page_uses_local_assets_only(client):
    response = client.get("/")

    assert response.status_code == 200
    page = response.content.decode()
    assert re.findall(r"""(?:src|href)=["'](?:https?:)?//""", page) == []
    assert '<script src="/static/vendor/uplot/uPlot.iife.min.js"></script>' in page
    assert '<script src="/static/readings/dashboard.js"></script>' in page
    config = json.loads(re.search(r'<script id="dashboard-config" type="application/json">(.*?)</script>', page).group(1))
    assert config == {
        "api": {
            "meters": "/api/v1/meters/",
            "readings": "/api/v1/meters/__meter__/readings/",
            "aggregates": "/api/v1/meters/__meter__/aggregates/",
            "completeness": "/api/v1/meters/__meter__/completeness/",
            "changes": "/api/v1/meters/__meter__/changes/",
        },
        "meterPlaceholder": "__meter__",
        "signedIn": False,
    }


def test_vendored_chart_library_is_the_pinned_version():
    pinned = re.search(r'uplot_version="([^"]+)"', (REPO / "scripts/vendor-js").read_text()).group(1)
    built = (REPO / "gateway/static/vendor/uplot/uPlot.iife.min.js").read_text()

    assert built.startswith(f"/*! https://github.com/leeoniya/uPlot (v{pinned}) */")
    assert (REPO / "gateway/static/vendor/uplot/uPlot.min.css").is_file()
    assert "MIT" in (REPO / "gateway/static/vendor/uplot/LICENSE").read_text()


def test_dashboard_script_loads_nothing_from_elsewhere():
    script = (REPO / "gateway/static/readings/dashboard.js").read_text()

    assert re.findall(r"https?://", script) == []
