"""Layering of a service's values per environment, and the all-at-once report of what is missing."""

from __future__ import annotations

from collections.abc import Iterable

import pytest

from shipyard.config import Config
from shipyard.errors import ConfigError, MissingSecretsError, UsageError
from shipyard.secrets.resolver import resolve


class Memory:
    """An in-memory provider (the protocol's four calls)."""

    writable = True

    def __init__(self, label: str, values: dict[str, str]) -> None:
        self.label, self.values, self.asked = label, dict(values), []  # type: ignore[var-annotated]

    def get(self, names: Iterable[str]) -> dict[str, str]:
        names = list(names)
        self.asked.append(names)
        return {n: self.values[n] for n in names if n in self.values}

    def set(self, name: str, value: str) -> None:
        self.values[name] = value

    def list(self) -> list[str]:
        return sorted(self.values)

    def delete(self, name: str) -> bool:
        return self.values.pop(name, None) is not None


def config(**api: object) -> Config:
    svc = {"repo": "api", "run": "python app.py", **api}
    return Config.model_validate({"project": "gli", "repos": {"api": {"path": "."}},
                                  "environments": {"stg": {"branch": "stg"}, "prod": {"branch": "main"}},
                                  "services": {"api": svc}})


def test_layers_and_sources() -> None:
    cfg = config(env={"A": "base", "B": "base", "C": "base", "URL": "pg://u:${secret:DB_PASSWORD}@db"},
                 environments={"prod": {"env": {"B": "prod", "C": "prod"}}}, requires_env=["JWT"])
    local = Memory("local", {"C": "from-store", "JWT": "jwt-value", "DB_PASSWORD": "pw1234", "OTHER": "x"})
    r = resolve(cfg, "api", "prod", [local], {"A": "cli"})
    assert {n: (v.value, v.source, v.secret) for n, v in r.values.items()} == {
        "A": ("cli", "override", False), "B": ("prod", "environments.prod", False),
        "C": ("from-store", "secret:local", True), "URL": ("pg://u:pw1234@db", "shipyard.yaml", True),
        "JWT": ("jwt-value", "secret:local", True)}
    assert "OTHER" not in r.environ()                       # a provider value nobody declared stays out
    assert set(r.secret_values) == {"from-store", "jwt-value", "pg://u:pw1234@db", "pw1234"}
    assert r.refs == ["DB_PASSWORD"] and not r.missing
    assert len(local.asked) == 1                            # one batched call per provider


def test_every_missing_or_empty_name_is_reported_at_once() -> None:
    cfg = config(env={"EMPTY": "", "URL": "${secret:DB_PASSWORD}"}, requires_env=["JWT_SECRET", "EMPTY", "WS_PORT"])
    with pytest.raises(MissingSecretsError) as err:
        resolve(cfg, "api", "prod", [Memory("local", {"WS_PORT": ""})])
    assert err.value.names == ["JWT_SECRET", "EMPTY", "WS_PORT", "DB_PASSWORD"]
    assert err.value.exit_code == 2
    assert str(err.value).startswith("api/prod: missing or empty: JWT_SECRET, EMPTY, WS_PORT, DB_PASSWORD (")
    assert "shipyard secrets set NAME --env prod" in str(err.value)
    lenient = resolve(cfg, "api", "prod", [Memory("local", {})], strict=False)
    assert lenient.values["URL"].value is None and lenient.missing[-1] == "DB_PASSWORD"


def test_first_provider_wins() -> None:
    cfg = config(requires_env=["A", "B"])
    r = resolve(cfg, "api", "stg", [Memory("local", {"A": "local-a"}), Memory("env", {"A": "env-a", "B": "env-b"})])
    assert (r.values["A"].source, r.values["B"].source) == ("secret:local", "secret:env")
    assert r.environ() == {"A": "local-a", "B": "env-b"}


def test_overrides_never_replace_secrets() -> None:
    cfg = config(env={"URL": "${secret:PW}", "LEVEL": "info"}, requires_env=["JWT"])
    providers = [Memory("local", {"PW": "pw-value", "JWT": "jwt-value"})]
    for name in ("JWT", "URL", "PW"):
        with pytest.raises(UsageError, match=f"--set {name}: {name} is a secret"):
            resolve(cfg, "api", "stg", providers, {name: "x"})
    assert resolve(cfg, "api", "stg", providers, {"LEVEL": "debug"}).values["LEVEL"].source == "override"


def test_a_name_backed_by_a_secret_is_refused_even_when_no_provider_has_it() -> None:
    cfg = config(env={"URL": "${secret:PW}", "LEVEL": "info"}, requires_env=["JWT", "LEVEL"])
    for name in ("JWT", "PW", "URL"):           # required without a value in shipyard.yaml; referenced
        with pytest.raises(UsageError, match=f"--set {name}: {name} is a secret"):
            resolve(cfg, "api", "stg", [Memory("local", {})], {name: "typed-on-the-command-line"}, strict=False)
    lenient = resolve(cfg, "api", "stg", [Memory("local", {})], {"LEVEL": "debug", "NEW": "1"}, strict=False)
    assert lenient.values["LEVEL"].source == "override" and lenient.values["NEW"].value == "1"


def test_set_names_are_checked_like_env_names() -> None:
    from shipyard.cli.deploy import parse_sets

    assert parse_sets(["LOG_LEVEL=debug", "_X=a=b"]) == {"LOG_LEVEL": "debug", "_X": "a=b"}
    for bad in ("BAD-NAME=1", "9LIVES=1", "A B=1", "Ä=1", f"{'V' * 256}=1"):
        with pytest.raises(UsageError, match="--set: invalid environment variable name"):
            parse_sets([bad])
    with pytest.raises(UsageError, match="expected NAME=VALUE"):
        parse_sets(["NOVALUE"])


def test_a_malformed_reference_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="invalid secret reference"):
        resolve(config(env={"A": "${secret:not valid}"}), "api", "stg", [])
