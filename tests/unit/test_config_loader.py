"""The loader: file:line:key errors for every kind of problem, all of them collected, interpolation."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from shipyard.config import CONFIG_NAME, InvalidConfig, check_text, find_config, load_config, validate_config
from shipyard.errors import ConfigError, UsageError

HEAD = """\
project: demo
repos:
  api: {path: ../api}
environments:
  dev: {branch: dev}
  stg: {branch: stg, promote_from: dev}
services:
  api:
    repo: api
    run: serve --port {port}
"""                          # 10 lines; services.api continues at line 11


def problems(text: str, **environ: str) -> list[ConfigError]:
    return check_text(textwrap.dedent(text), "shipyard.yaml", environ)[1]


def only(text: str, **environ: str) -> ConfigError:
    found = problems(text, **environ)
    assert len(found) == 1, [str(p) for p in found]
    return found[0]


def test_minimal_config_is_valid() -> None:
    config, found = check_text(HEAD, "shipyard.yaml", {})
    assert found == [] and config is not None
    assert config.services["api"].run == "serve --port {port}"


def test_error_renders_file_line_key() -> None:
    err = only(HEAD + "    deploy:\n      strategy: {type: rolling, batch_size: 0}\n")
    assert (err.file, err.line, err.key) == ("shipyard.yaml", 12, "services.api.deploy.strategy.batch_size")
    assert str(err).startswith("shipyard.yaml:12: services.api.deploy.strategy.batch_size: ")
    assert "greater than or equal to 1" in err.message and "\n" not in str(err)


def test_block_style_value_line() -> None:
    text = HEAD + "    deploy:\n      strategy:\n        type: rolling\n        max_surge: 0\n" \
        "        max_unavailable: 0\n"
    err = only(text)
    assert err.key == "services.api.deploy.strategy" and err.line == 12
    assert "max_surge + max_unavailable" in err.message


def test_nested_list_item_lines() -> None:
    text = HEAD + (
        "    deploy:\n"                          # 11
        "      strategy:\n"                      # 12
        "        type: canary\n"                 # 13
        "        steps:\n"                       # 14
        "          - {weight: 10, pause: 1m}\n"  # 15
        "          - weight: 150\n"              # 16
        "            pause: 30s\n"               # 17
        "          - {weight: 20, pause: soon}\n"  # 18
    )
    found = {p.key: p for p in problems(text)}
    assert found["services.api.deploy.strategy.steps[1].weight"].line == 16
    assert found["services.api.deploy.strategy.steps[2].pause"].line == 18
    assert "invalid duration 'soon'" in found["services.api.deploy.strategy.steps[2].pause"].message


def test_canary_weights_must_increase_points_at_the_step() -> None:
    text = HEAD + "    deploy:\n      strategy:\n        type: canary\n        steps:\n" \
        "          - {weight: 50}\n          - {weight: 20}\n"
    err = only(text)
    assert err.key == "services.api.deploy.strategy.steps[1].weight" and err.line == 16
    assert "must increase" in err.message


def test_missing_required_key_uses_parent_line() -> None:
    text = HEAD.replace("  stg: {branch: stg, promote_from: dev}", "  stg:\n    promote_from: dev")
    err = only(text)
    assert (err.key, err.line, err.message) == ("environments.stg.branch", 6, "is required")


def test_missing_top_level_key_is_line_one() -> None:
    err = only("# a comment\nenvironments: {dev: {branch: dev}}\n")
    assert (err.key, err.line) == ("project", 2)


def test_missing_run_for_process_service() -> None:
    err = only(HEAD.replace("    run: serve --port {port}\n", ""))
    assert (err.key, err.line) == ("services.api.run", 8)
    assert "kind: process" in err.message


def test_unknown_key_suggests_and_lists_allowed() -> None:
    err = only(HEAD + "    deploy:\n      strategy: {type: rolling, batchsize: 2}\n")
    assert err.key == "services.api.deploy.strategy.batchsize" and err.line == 12
    assert "did you mean 'batch_size'" in err.message and "allowed: type, batch_size" in err.message


def test_unknown_top_level_key() -> None:
    err = only(HEAD + "servics: {}\n")
    assert err.key == "servics" and err.line == 11 and "did you mean 'services'" in err.message


@pytest.mark.parametrize(("snippet", "key", "allowed"), [
    ("    health: {type: grpc}\n", "services.api.health.type", "http, tcp, exec"),
    ("    deploy: {strategy: {type: recreate}}\n", "services.api.deploy.strategy.type",
     "all_at_once, rolling, blue_green, canary"),
    ("    deploy: {target: {type: k8s}}\n", "services.api.deploy.target.type", "command, ecs, local, ssh, static"),
    ("    deploy: {router: {type: traefik}}\n", "services.api.deploy.router.type", "alb, builtin, haproxy"),
])
def test_unknown_discriminator_lists_allowed_types(snippet: str, key: str, allowed: str) -> None:
    err = only(HEAD + snippet)
    assert err.key == key and err.line == 11
    assert "unknown type" in err.message and f"expected one of: {allowed}" in err.message


def test_channel_without_type() -> None:
    err = only(HEAD + "notifications:\n  channels:\n    ops: {url: http://x}\n")
    assert err.key == "notifications.channels.ops.type" and err.line == 13
    assert "missing `type`" in err.message and "slack" in err.message


def test_all_problems_are_collected_in_line_order() -> None:
    text = textwrap.dedent("""\
        project: demo
        timezone: Mars/Olympus
        repos:
          api: {path: ../api}
        environments:
          dev: {branch: dev, promote_from: nope}
          prod: {branch: main, confirm: thrice}
        services:
          api:
            repo: apii
            run: x
            env: {1BAD: x}
          web:
            repo: api
            kind: static
    """)
    found = problems(text)
    assert [(p.line, p.key) for p in found] == [
        (2, "timezone"),
        (6, "environments.dev.promote_from"),
        (7, "environments.prod.confirm"),
        (10, "services.api.repo"),
        (12, "services.api.env.1BAD"),
        (13, "services.web.publish_dir"),
    ]
    assert "unknown time zone" in found[0].message
    assert "'nope': unknown environment" in found[1].message and "known: dev, prod" in found[1].message
    assert "'apii': unknown repo" in found[3].message


def test_load_config_raises_first_problem_with_count(tmp_path: Path) -> None:
    path = tmp_path / CONFIG_NAME
    path.write_text("project: demo\nenvironments:\n  dev: {branch: dev, confirm: x, frozen: maybe}\n")
    with pytest.raises(InvalidConfig) as info:
        load_config(path)
    err = info.value
    assert isinstance(err, ConfigError) and isinstance(err, UsageError) and err.exit_code == 2
    assert len(err.errors) == 2 and err.line == 3 and str(path) in str(err)
    assert "(and 1 more problem;" in str(err)
    assert [str(e) for e in validate_config(path)] == [str(e) for e in err.errors]


def test_load_config_sets_source_and_relative_paths(tmp_path: Path) -> None:
    path = tmp_path / CONFIG_NAME
    path.write_text(HEAD)
    config = load_config(path)
    assert config.source == path.resolve() and config.root == tmp_path.resolve()
    assert config.repo_path("api") == (tmp_path / ".." / "api").resolve()
    assert config.state_url == f"sqlite:///{tmp_path.resolve()}/.shipyard/state.db"


@pytest.mark.parametrize(("text", "line", "words"), [
    ("", 1, "empty"),
    ("- a\n- b\n", 1, "not a list"),
    ("just text\n", 1, "not a single value"),
    ("project: demo\nrepos: [\n", 3, "invalid YAML"),
    ("project: demo\n  bad: indent\n", 2, "invalid YAML"),
    ("project: a\nproject: b\n", 2, "duplicate key 'project'"),
    ("project: !!python/object:os.system x\n", 1, "unsupported YAML tag"),
])
def test_unreadable_yaml(text: str, line: int, words: str) -> None:
    err = only(text)
    assert err.line == line and words in err.message and err.file == "shipyard.yaml"


def test_missing_file_and_bad_encoding(tmp_path: Path) -> None:
    assert "file not found" in str(validate_config(tmp_path / "nope.yaml")[0])
    bad = tmp_path / CONFIG_NAME
    bad.write_bytes(b"project: \xff\xfe\n")
    with pytest.raises(ConfigError, match="not UTF-8"):
        load_config(bad)


def test_yaml_anchors_and_merge_keys() -> None:
    text = HEAD + "    health: &hc {type: http, path: /ping}\n  web:\n    <<: {repo: api, run: y}\n" \
        "    health: *hc\n"
    config, found = check_text(text, "f", {})
    assert found == [] and config is not None
    assert config.services["web"].run == "y" and config.services["web"].effective_health.path == "/ping"  # type: ignore[union-attr]


def test_scalars_keep_their_spelling() -> None:
    text = HEAD + "    env: {DEBUG: on, VERSION: 1.10, PORT: 8080, EMPTY: ''}\n"
    config, found = check_text(text, "f", {})
    assert found == [] and config is not None
    assert config.services["api"].env == {"DEBUG": "on", "VERSION": "1.10", "PORT": "8080", "EMPTY": ""}


# --- interpolation --------------------------------------------------------------------------------------
def test_interpolation_from_environment() -> None:
    text = HEAD.replace("dev: {branch: dev}", "dev: {branch: '${DEV_BRANCH}'}") + \
        "    build: make ${TARGET:-all} ${EMPTY:-fallback} ${SET_EMPTY}\n" \
        "    env: {URL: '${secret:DB_URL}', LIT: '$${HOME}', SHELL_VAR: $PORT, BAKE: '${NOPE:-}'}\n" \
        "    deploy: {bake: '${BAKE_TIME}'}\n"
    env = {"DEV_BRANCH": "develop", "BAKE_TIME": "90s", "SET_EMPTY": "", "EMPTY": ""}
    config, found = check_text(text, "f", env)
    assert found == [] and config is not None
    assert config.environments["dev"].branch == "develop"
    assert config.services["api"].build == "make all fallback "
    assert config.services["api"].env == {"URL": "${secret:DB_URL}", "LIT": "${HOME}", "SHELL_VAR": "$PORT",
                                          "BAKE": ""}
    assert config.services["api"].deploy.bake == 90.0


def test_missing_variable_is_an_error_at_its_line_once() -> None:
    err = only(HEAD + "    deploy:\n      bake: ${BAKE_TIME}\n")
    assert (err.line, err.key) == (12, "services.api.deploy.bake")
    assert "environment variable BAKE_TIME is not set" in err.message


def test_missing_variable_in_block_scalar_points_at_its_line() -> None:
    text = HEAD + "    hooks:\n      cleanup: |\n        echo one\n        echo ${WHO}\n"
    err = only(text)
    assert (err.line, err.key) == (14, "services.api.hooks.cleanup")


def test_bad_reference_syntax() -> None:
    err = only(HEAD + "    build: echo ${not valid}\n")
    assert "invalid reference" in err.message and err.line == 11


# --- find_config ----------------------------------------------------------------------------------------
def test_find_config_walks_up(tmp_path: Path) -> None:
    (tmp_path / CONFIG_NAME).write_text(HEAD)
    deep = tmp_path / "a" / "b"
    deep.mkdir(parents=True)
    assert find_config(deep) == (tmp_path / CONFIG_NAME).resolve()


def test_find_config_says_what_to_do(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        find_config(tmp_path)
    assert str(info.value) == f"no shipyard.yaml found in {tmp_path.resolve()} or its parents; run `shipyard init`"
