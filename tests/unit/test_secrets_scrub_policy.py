"""The scrub policy: an allow-list per purpose, a deny-list that wins, and extra values passed as given."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from shipyard.secrets import scrub
from shipyard.secrets.providers.env import EnvProvider

USER_ENV = {
    "PATH": "/usr/bin", "HOME": "/home/u", "LANG": "C.UTF-8", "LC_TIME": "C", "TERM": "dumb",
    "PYTHONPATH": "/src", "GIT_SSH_COMMAND": "ssh -i k", "SSH_AUTH_SOCK": "/tmp/agent", "https_proxy": "http://p:3128",
    "AWS_ACCESS_KEY_ID": "AKIA", "AWS_PROFILE": "prod", "SHIPYARD_MASTER_KEY": "k", "SHIPYARD_SECRET_DB": "pw",
    "GITHUB_TOKEN": "ghp", "GH_TOKEN": "gho", "GIT_TOKEN": "t", "LC_SECRET": "x", "DATABASE_URL": "pg://u:p@db",
    "RANDOM_THING": "r",
}


@pytest.fixture(autouse=True)
def fresh_denials() -> Iterator[None]:
    prefixes, names = set(scrub._denied_prefixes), set(scrub._denied_names)
    yield
    scrub._denied_prefixes.clear()
    scrub._denied_prefixes.update(prefixes)
    scrub._denied_names.clear()
    scrub._denied_names.update(names)


def test_base_passes_only_harmless_variables() -> None:
    assert scrub.scrubbed(USER_ENV) == {"PATH": "/usr/bin", "HOME": "/home/u", "LANG": "C.UTF-8", "LC_TIME": "C",
                                        "TERM": "dumb"}


def test_purposes_add_what_they_need_and_nothing_secret() -> None:
    python = scrub.scrubbed(USER_ENV, allow=scrub.PYTHON)
    assert python["PYTHONPATH"] == "/src" and "GIT_SSH_COMMAND" not in python
    git = scrub.scrubbed(USER_ENV, allow=scrub.GIT)
    assert {k: git[k] for k in ("GIT_SSH_COMMAND", "SSH_AUTH_SOCK", "https_proxy")} == {
        "GIT_SSH_COMMAND": "ssh -i k", "SSH_AUTH_SOCK": "/tmp/agent", "https_proxy": "http://p:3128"}
    for env in (python, git):
        assert not {"GIT_TOKEN", "LC_SECRET", "AWS_ACCESS_KEY_ID", "AWS_PROFILE", "SHIPYARD_MASTER_KEY",
                    "SHIPYARD_SECRET_DB", "GITHUB_TOKEN", "GH_TOKEN", "DATABASE_URL", "RANDOM_THING"} & set(env)


def test_the_deny_list_wins_over_any_allow_list() -> None:
    assert not scrub.passes("AWS_REGION", allow=["*"])
    assert not scrub.passes("GIT_HTTP_PASSWORD", allow=scrub.GIT)
    assert scrub.passes("GIT_DIR", allow=scrub.GIT)


def test_configured_prefixes_and_env_provider_variables_are_denied() -> None:
    env = {"PATH": "/bin", "GIT_CI_DEPLOY": "v1", "GIT_PLAIN": "ok", "LC_APP_KEY": "v2"}
    assert scrub.scrubbed(env, allow=scrub.GIT)["GIT_CI_DEPLOY"] == "v1"
    EnvProvider("GIT_CI_", env)                         # a provider with that prefix exists in this process
    EnvProvider("", env).get(["LC_APP_KEY", "ABSENT"])  # a secret was read from LC_APP_KEY
    assert scrub.scrubbed(env, allow=scrub.GIT) == {"PATH": "/bin", "GIT_PLAIN": "ok"}


def test_extra_values_are_the_callers_and_pass_as_given() -> None:
    env = scrub.scrubbed({"AWS_SECRET_ACCESS_KEY": "shell's"}, extra={"AWS_SECRET_ACCESS_KEY": "the app's own"})
    assert env == {"PATH": "/usr/local/bin:/usr/bin:/bin", "AWS_SECRET_ACCESS_KEY": "the app's own"}
