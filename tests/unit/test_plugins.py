"""The plugin registry (shipyard.plugins): built-ins come from shipyard's own entry points, a third-party
distribution's kind is found by its config `type`, validated with file:line errors and listed in the
schema, and a broken, mistaken or duplicate plugin is one PluginError naming its distribution."""

from __future__ import annotations

import sys
import tomllib
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from plugin_dist import write_distribution
from shipyard import plugins
from shipyard.config import check_text, config_schema, problems
from shipyard.errors import PluginError

ROOT = Path(__file__).resolve().parents[2]
HEAD = """project: p
repos: {api: {path: .}}
environments: {dev: {branch: dev}}
services:
  api:
    repo: api
    run: python app.py
"""


def forget() -> None:
    """The registry, and the schema config.problems keeps to word its messages, as of sys.path now."""
    plugins.reset()
    problems._schema.cache_clear()


@pytest.fixture
def on_path(tmp_path: Path) -> Iterator[Callable[..., Path]]:
    """Put a distribution on sys.path for one test; the registry forgets it after."""
    added: list[str] = []

    def add(name: str = "shipyard_recording", **kw: object) -> Path:
        where = write_distribution(tmp_path / name, name, **kw)  # type: ignore[arg-type]
        sys.path.insert(0, str(where))
        added.append(str(where))
        forget()
        return where

    yield add
    for path in added:
        sys.path.remove(path)
    for mod in [m for m in sys.modules if m.startswith(("shipyard_recording", "broken_", "other_"))]:
        del sys.modules[mod]
    forget()


def test_the_built_ins_are_shipyards_own_entry_points() -> None:
    declared = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["entry-points"]
    assert {g: declared[plugins.GROUPS[g]] for g in plugins.GROUPS} == plugins.BUILTIN
    assert set(plugins.kinds("targets")) == {"local", "ssh", "ecs", "static", "command"}
    assert set(plugins.kinds("routers")) == {"builtin", "haproxy", "nginx", "alb"}
    assert {r.distribution.split()[0] for g in plugins.GROUPS for r in plugins.registered(g).values()} == {"shipyard"}


def test_a_third_party_router_kind_is_found_validated_and_in_the_schema(on_path: Callable[..., Path]) -> None:
    on_path()
    found = plugins.registered("routers")["recording"]
    assert found.distribution == "shipyard_recording 1.0" and found.entry_point == "shipyard_recording:KIND"
    config, problems = check_text(HEAD + "    deploy: {router: {type: recording, log: calls.json}}\n")
    assert problems == [] and config is not None
    assert type(config.services["api"].deploy.router).__name__ == "RecordingConfig"
    _, problems = check_text(HEAD + "    deploy: {router: {type: recording, lgo: calls.json}}\n")
    assert [str(p) for p in problems] == [
        "shipyard.yaml:8: services.api.deploy.router.log: is required",
        "shipyard.yaml:8: services.api.deploy.router.lgo: unknown key (did you mean 'log'?); "
        "allowed: type, log, listen"]
    router = config_schema()["$defs"]["Deploy"]["properties"]["router"]
    assert set(router["discriminator"]["mapping"]) == {"alb", "builtin", "haproxy", "nginx", "recording"}
    assert len(router["oneOf"]) == 5


def test_an_unknown_type_lists_the_registered_ones(on_path: Callable[..., Path]) -> None:
    on_path()
    _, problems = check_text(HEAD + "    deploy: {router: {type: nginz}}\n")
    assert [str(p) for p in problems] == ["shipyard.yaml:8: services.api.deploy.router.type: unknown type 'nginz'; "
                                          "expected one of: alb, builtin, haproxy, nginx, recording"]


def test_a_kind_declared_by_two_distributions_is_one_error(on_path: Callable[..., Path]) -> None:
    on_path()
    on_path("other_recording", entry_points={"shipyard.routers": {"recording": "other_recording:KIND"}})
    with pytest.raises(PluginError, match=r"kind 'recording' is declared twice: by \S+ 1.0 and by \S+ 1.0"):
        plugins.kinds("routers")
    with pytest.raises(PluginError, match="declared twice"):    # validating any router block says it too
        check_text(HEAD + "    deploy: {router: {type: builtin}}\n")


def test_a_builtin_name_taken_by_a_plugin_is_one_error(on_path: Callable[..., Path]) -> None:
    on_path(entry_points={"shipyard.routers": {"haproxy": "shipyard_recording:KIND"}})
    with pytest.raises(PluginError, match=r"'haproxy' is declared twice: by shipyard \S+ and by shipyard_recording"):
        plugins.kinds("routers")


@pytest.mark.parametrize(("module", "value", "message"), [
    ("raise RuntimeError('no config for you')\n", "broken_plugin:KIND",
     r"cannot load shipyard.routers entry point 'recording' of broken_plugin 1.0 \(broken_plugin:KIND\): "
     r"RuntimeError: no config for you"),
    ("KIND = 42\n", "broken_plugin:KIND", r"of broken_plugin 1.0 .* is a int, not a shipyard.plugins.Kind"),
    ("", "broken_plugin:MISSING", r"cannot load .* of broken_plugin 1.0 .*AttributeError"),
])
def test_a_broken_plugin_is_one_error_naming_its_distribution(on_path: Callable[..., Path], module: str,
                                                              value: str, message: str) -> None:
    on_path("broken_plugin", module=module, entry_points={"shipyard.routers": {"recording": value}})
    with pytest.raises(PluginError, match=message) as raised:
        plugins.kinds("routers")
    assert "\n" not in str(raised.value)


def test_a_kind_named_unlike_its_entry_point_is_refused(on_path: Callable[..., Path]) -> None:
    on_path(entry_points={"shipyard.routers": {"recorder": "shipyard_recording:KIND"}})
    with pytest.raises(PluginError, match="declares kind 'recording': the entry point must be named like the kind"):
        plugins.kinds("routers")


def test_a_target_kind_is_found_in_its_own_group(on_path: Callable[..., Path]) -> None:
    on_path(entry_points={"shipyard.targets": {"recording": "shipyard_recording:KIND"}})
    assert "recording" in plugins.kinds("targets") and "recording" not in plugins.kinds("routers")
