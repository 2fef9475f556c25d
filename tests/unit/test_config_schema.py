"""Meta-tests: the JSON Schema documents every field, docs/config.md mentions every key, and the file
`shipyard init` writes loads."""

from __future__ import annotations

import json
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from shipyard.config import CONFIG_NAME, Rolling, config_schema, load_config, render_init

DOCS = Path(__file__).resolve().parents[2] / "docs" / "config.md"


def _models(schema: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    yield "Config", schema
    yield from schema["$defs"].items()


def test_schema_is_json_and_names_the_draft() -> None:
    schema = config_schema()
    assert schema["$schema"].endswith("2020-12/schema") and schema["title"] == "shipyard.yaml"
    json.dumps(schema)
    assert set(schema["required"]) == {"project", "environments"}


def test_every_field_has_a_description() -> None:
    missing = [f"{model}.{name}" for model, node in _models(config_schema())
               for name, prop in node.get("properties", {}).items() if not prop.get("description")]
    assert missing == []


def test_every_model_has_a_description() -> None:
    assert [model for model, node in _models(config_schema()) if not node.get("description")] == []


def test_every_field_is_documented() -> None:
    text = DOCS.read_text()
    mentioned = set(re.findall(r"`([A-Za-z_]+)`", text)) | set(re.findall(r"`([A-Za-z_]+):", text))
    fields = {name for _, node in _models(config_schema()) for name in node.get("properties", {})}
    assert sorted(fields - mentioned) == []


def test_discriminated_unions_are_in_the_schema() -> None:
    deploy = config_schema()["$defs"]["Deploy"]["properties"]
    assert set(deploy["strategy"]["discriminator"]["mapping"]) == {"all_at_once", "rolling", "blue_green", "canary"}
    duration = config_schema()["$defs"]["Rolling"]["properties"]["drain_timeout"]
    assert {option["type"] for option in duration["anyOf"]} == {"string", "number"}


def test_init_round_trip(tmp_path: Path) -> None:
    project = tmp_path / "Gli API"
    project.mkdir()
    path = project / CONFIG_NAME
    path.write_text(render_init(project, remote_url="git@github.com:org/gli-api.git"))
    config = load_config(path, environ={})
    assert config.project == "gli-api" and list(config.services) == ["gli-api"]
    assert config.repos["gli-api"].url == "git@github.com:org/gli-api.git"
    assert config.repo_path("gli-api") == project.resolve()
    assert [(n, e.branch, e.promote_from) for n, e in config.environments.items()] == [
        ("dev", "dev", None), ("stg", "stg", "dev"), ("prod", "main", "stg")]
    assert config.environments["prod"].confirm == "twice"
    service = config.service_for("gli-api", "stg")
    assert isinstance(service.deploy.strategy, Rolling) and service.health.type == "http"
    assert {config.listen_for("gli-api", env) for env in config.environments} == {
        "127.0.0.1:8100", "127.0.0.1:8200", "127.0.0.1:8300"}
    assert set(config.alarms) == {"high_error_rate", "high_5xx", "slow_responses", "no_healthy_hosts"}
    assert config.alarms["no_healthy_hosts"].comparison == "<"
    assert service.hooks.defined() == {}
    assert "# hooks:" in path.read_text()


def test_init_reads_the_git_remote(tmp_path: Path) -> None:
    repo, plain = tmp_path / "repo", tmp_path / "plain"
    plain.mkdir()
    subprocess.run(["git", "init", "-q", str(repo)], check=True, timeout=30)
    subprocess.run(["git", "-C", str(repo), "remote", "add", "origin", "https://example.com/x.git"],
                   check=True, timeout=30)
    assert '{path: ".", url: "https://example.com/x.git", groups: [app]}' in render_init(repo)
    assert '{path: ".", groups: [app]}' in render_init(plain)
