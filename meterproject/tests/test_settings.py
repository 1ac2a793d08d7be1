"""The settings' reader of the environment (django-environ held to the project's rules)."""
import pytest
from django.core.exceptions import ImproperlyConfigured

from meterproject.settings import Env


@pytest.fixture
def env(monkeypatch):
    environ = {}
    monkeypatch.setattr(Env, "ENVIRON", environ)
    reader = Env()
    reader.environ = environ
    return reader


def test_an_empty_value_is_unset(env):
    env.environ.update(A="", B="")

    assert env.bool("A", default=True) is True
    assert env.str("B", default="x") == "x"
    with pytest.raises(ImproperlyConfigured, match="Set the A environment variable"):
        env.str("A")


def test_a_value_is_taken_as_written(env):
    env.environ.update(KEY="$OTHER", OTHER="no")

    assert env.str("KEY") == "$OTHER"


@pytest.mark.parametrize("value, expected", [
    ("1", True), ("true", True), ("Yes", True), (" on ", True),
    ("0", False), ("false", False), ("y", False), ("ok", False), ("2", False),
])
def test_booleans_are_1_true_yes_on(env, value, expected):
    env.environ["FLAG"] = value

    assert env.bool("FLAG", default=not expected) is expected


def test_numbers_are_strict(env):
    env.environ.update(F="1e3", BAD="10s", I="60")

    assert env.float("F", default=0.0) == 1000.0
    assert env.int("I", default=0) == 60
    with pytest.raises(ValueError):
        env.float("BAD", default=0.0)


def test_lists_drop_blanks(env):
    env.environ["HOSTS"] = " a.example, b.example ,, "

    assert env.list("HOSTS", default=[]) == ["a.example", "b.example"]
    assert env.list("NONE", default=["localhost"]) == ["localhost"]


def test_a_file_fills_what_the_environment_does_not_set(env, tmp_path):
    env.environ["SET"] = "from-environment"
    (tmp_path / ".env").write_text("# a comment\nSET=from-file\nNEW='quoted'\nEMPTY=\nQUOTED_EMPTY=''\n")

    Env.read_env(tmp_path / ".env")

    assert env.environ == {"SET": "from-environment", "NEW": "quoted"}
