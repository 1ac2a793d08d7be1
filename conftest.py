"""Every test module gets the shared fixtures of the testing/ plugins, one module per concern:
data (the reference file, generated meters, new meters), stores (cache, influxd, Mosquitto),
servers (gRPC servers of this process, live web server, servers as processes), browser
(Chromium) and citus (a Citus cluster of the tests' own). Helpers that tests import live in testing/helpers.py."""
import os

pytest_plugins = ["testing.data", "testing.stores", "testing.servers", "testing.browser", "testing.citus"]

# Servers the tests start as subprocesses (manage.py ...) need a key; pytest itself gets one from
# settings, which pytest.ini's DJANGO_TESTING=1 (set before they load) tells they are under test.
os.environ.setdefault("DJANGO_SECRET_KEY", "test-only-key-" + "q7Wm2Zr9Xc4Vb8Nt1Ly6Hk3Jd5Gf0Sp" * 2)



def pytest_addoption(parser):
    parser.addoption(
        "--engine-dependent", action="store_true",
        help="only the tests whose result may depend on the database engine: for a pass on another engine "
             "after the whole suite ran on one (marker any_engine and tests without the test database are left out)",
    )


def pytest_collection_modifyitems(config, items):
    if not config.getoption("engine_dependent"):
        return
    kept = [item for item in items if engine_dependent(item)]
    if len(kept) < len(items):
        config.hook.pytest_deselected(items=[item for item in items if item not in kept])
        items[:] = kept


def engine_dependent(item) -> bool:
    """Whether a test's result may change with the database engine: it uses the test database
    (pytest-django's django_db marker, or a fixture that needs the database: served data, servers
    over it) and is not marked any_engine. The Docker image tests count too: they run in the
    PostgreSQL pass only, their containers' database being PostgreSQL whatever the pass."""
    if item.get_closest_marker("docker"):
        return True
    if item.get_closest_marker("any_engine"):
        return False
    return bool(item.get_closest_marker("django_db")) or "django_db_setup" in item.fixturenames
