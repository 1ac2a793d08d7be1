"""docs/configuration.md, .env.sample and the code agree: the table and the sample name the same
variables with the same defaults, and every variable the code reads from the environment is in
them."""
import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
# Python: os.environ.get("X"), os.environ["X"], os.getenv("X"), env("X"), env.int("X", ...).
PYTHON_READ = re.compile(r"""(?:\benviron(?:\.get)?\s*[(\[]|\bgetenv\(|\benv(?:\.[a-z]+)?\()\s*['"]([A-Z][A-Z0-9_]+)['"]""")
# Shell and compose: $X, ${X}, ${X:-default} (compose's $$ is a literal $).
SHELL_READ = re.compile(r"(?<!\$)\$\{?([A-Z][A-Z0-9_]+)")
SHELL_FILES = ["scripts/run", "scripts/test", "scripts/bootstrap", "scripts/docker-entrypoint", "scripts/vendor-js",
               ".ci/run", "docker-compose.yml"]
NOT_SETTINGS = {"PATH", "HOME"}


def table(text: str) -> dict[str, str | None]:
    """The rows of the one table: variable → the default its row states (the code span its default
    cell starts with), or None."""
    rows = {}
    for name, default in re.findall(r"^\| `([A-Z][A-Z0-9_]+)` \|([^|]*)\|", text, re.M):
        assert name not in rows, f"{name} is in docs/configuration.md twice"
        stated = re.match(r"`([^`]*)`", default.strip())
        rows[name] = stated.group(1) if stated else None
    return rows


def sample(text: str) -> dict[str, str | None]:
    """.env.sample's variables: `NAME=value` states a default; `NAME=` and `# NAME=example` do not."""
    variables = {}
    for commented, name, value in re.findall(r"^(#\s*)?([A-Z][A-Z0-9_]+)=(.*)$", text, re.M):
        assert name not in variables, f"{name} is in .env.sample twice"
        variables[name] = value.strip() if value.strip() and not commented else None
    return variables


def read_by_code() -> set[str]:
    sources = [p for p in REPO.glob("**/*.py") if ".venv" not in p.parts and not p.name.startswith("test_")]
    read = set()
    for path in sources:
        read |= set(PYTHON_READ.findall(path.read_text()))
    for name in SHELL_FILES:
        text = (REPO / name).read_text()
        read |= set(PYTHON_READ.findall(text)) | set(SHELL_READ.findall(text))
    return read - NOT_SETTINGS


DOCUMENTED = table((REPO / "docs" / "configuration.md").read_text())
SAMPLE = sample((REPO / ".env.sample").read_text())


def test_the_table_and_env_sample_name_the_same_variables():
    assert DOCUMENTED, "no rows found: the table's layout no longer matches the pattern above"
    assert sorted(set(DOCUMENTED) - set(SAMPLE)) == [], "in docs/configuration.md, not in .env.sample"
    assert sorted(set(SAMPLE) - set(DOCUMENTED)) == [], "in .env.sample, not in docs/configuration.md"


def test_defaults_agree_where_both_state_one():
    disagree = {
        name: (DOCUMENTED[name], SAMPLE[name]) for name in DOCUMENTED.keys() & SAMPLE.keys()
        if DOCUMENTED[name] is not None and SAMPLE[name] is not None and DOCUMENTED[name] != SAMPLE[name]
    }

    assert disagree == {}
    # Not vacuous: most variables with a value in .env.sample have it in the table too.
    assert sum(1 for name in SAMPLE if SAMPLE[name] is not None and DOCUMENTED.get(name) is not None) > 30


def test_every_variable_the_code_reads_is_documented():
    read = read_by_code()

    # Not vacuous: settings, the web server, the scripts, compose and the test helpers are all seen.
    assert {"DATABASE_URL", "DJANGO_TESTING", "WEB_CONCURRENCY", "PROMETHEUS_MULTIPROC_DIR", "ROLE",
            "DJANGO_SUPERUSER_EMAIL", "MQTT_PORT", "CI"} <= read
    assert sorted(read - set(DOCUMENTED)) == []
