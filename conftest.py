"""Every test module gets the shared fixtures of the testing/ plugins, one module per concern:
data (the reference file, generated meters, new meters), stores (cache, influxd, Mosquitto),
servers (gRPC servers of this process, live web server, servers as processes), browser
(Chromium) and citus (a Citus cluster of the tests' own). Helpers that tests import live in testing/helpers.py."""
import os

pytest_plugins = ["testing.data", "testing.stores", "testing.servers", "testing.browser", "testing.citus"]

# Servers the tests start as subprocesses (manage.py ...) need a key; pytest itself gets one from
# settings, which pytest.ini's DJANGO_TESTING=1 (set before they load) tells they are under test.
os.environ.setdefault("DJANGO_SECRET_KEY", "test-only-key-" + "q7Wm2Zr9Xc4Vb8Nt1Ly6Hk3Jd5Gf0Sp" * 2)
