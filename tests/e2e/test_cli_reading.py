"""The CLI as people read it, through the real command in a pipe at 80 columns (issue 8, section 6).

One workspace with a deployment that succeeded, one rolled back by a failing health check (so with a
long reason), a promotion and a secret. Then: tables keep every id whole and every reason complete;
`show` takes a unique prefix of a deployment or promotion id and refuses an ambiguous one in one line;
every read command's --json is valid and keeps its shape from one run to the next.
"""

from __future__ import annotations

import http.server
import json
import re
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from shipyard.demo.workspace import commit_version
from shipyard.secrets.sealing import encode_key, new_key
from shipyard.testing.cli import run_cli as run_with_input

from .conftest import E2E, Result, assert_ok, assert_one_error

TOKEN = ("READING_TOKEN", "reading-token-Vb7Nq2Xz9Lw4")


class _Hook(http.server.BaseHTTPRequestHandler):
    def do_POST(self) -> None:      # the name http.server calls
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self.send_response(200)
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


@dataclass
class Reading:
    e2e: E2E
    good: str
    bad: str
    promotion: str

    def cli(self, *args: str, **env: str) -> Result:
        return self.e2e.cli(*args, **env)


@pytest.fixture(scope="module")
def reading(module_workspace: E2E) -> Iterator[Reading]:
    e2e = module_workspace
    e2e.env["SHIPYARD_MASTER_KEY"] = encode_key(new_key())
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Hook)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        e2e.edit_config(lambda text: text.replace("  api:\n    repo: api\n", "  api:\n    repo: api\n    env: {"
                                                  f"{TOKEN[0]}: \"${{secret:{TOKEN[0]}}}\"}}\n", 1)
                        + f"notifications:\n  channels:\n    hook: {{type: webhook, url: "
                          f"\"http://127.0.0.1:{server.server_address[1]}/hook\"}}\n  routes: []\n")
        assert_ok(run_with_input(e2e.root, "secrets", "set", TOKEN[0], "--env", "stg", env=e2e.env,
                                 input=TOKEN[1]))
        good = assert_ok(e2e.deploy("api", "--json")).json()["id"]
        commit_version(e2e.ws, "api", "1.1.0", branch="dev")
        promoted = assert_ok(e2e.cli("promote", "dev", "stg", "--yes", "--no-deploy", "--json")).json()
        commit_version(e2e.ws, "api", "2.0.0", health_fail=True)          # on top of the promotion
        assert_one_error(e2e.deploy("api"), 1)
        bad = next(d["id"] for d in e2e.deployments() if d["state"] == "rolled_back")
        yield Reading(e2e, good, bad, promoted["outcome"]["id"])
    finally:
        server.shutdown()
        server.server_close()


def _flat(text: str) -> str:
    return " ".join(text.split())


def _whole(word: str, text: str) -> bool:
    return re.search(rf"(^|\s){re.escape(word)}(\s|$)", text, re.MULTILINE) is not None


# ---- tables ------------------------------------------------------------------------------------------------

def test_history_in_a_pipe_at_80_columns_keeps_ids_and_reasons(reading: Reading) -> None:
    rows = assert_ok(reading.cli("history", "--json")).json()["deployments"]
    bad = next(r for r in rows if r["id"] == reading.bad)
    assert len(bad["reason"]) > 80, "the rolled-back deployment needs a long reason for this test"
    res = assert_ok(reading.cli("history"))            # COLUMNS=80, stdout a pipe (no terminal)
    for r in rows:
        assert _whole(r["id"], res.stdout), f"{r['id']} cut or wrapped:\n{res.stdout}"
        assert _whole(r["revision"][:8], res.stdout), res.stdout
    assert bad["reason"] in _flat(res.stdout), f"the reason is incomplete:\n{res.stdout}"
    assert "…" not in res.stdout
    assert max(len(line) for line in res.stdout.splitlines()) <= 80, res.stdout


def test_show_at_80_columns_prints_every_error_and_message_whole(reading: Reading) -> None:
    shown = assert_ok(reading.cli("show", reading.bad, "--json")).json()
    res = assert_ok(reading.cli("show", reading.bad))
    text = _flat(res.stdout)
    errors = [s["error"] for s in shown["steps"] if s["error"]]
    assert errors, shown["steps"]
    for error in errors:
        assert _flat(error) in text, f"step error incomplete: {error!r}\n{res.stdout}"
    for event in shown["events"]:
        assert _flat(event["message"] or "") in text, f"event message incomplete: {event['message']!r}"
    assert _flat(shown["deployment"]["reason"]) in text


def test_promotions_and_status_at_80_columns(reading: Reading) -> None:
    promos = assert_ok(reading.cli("history", "--promotions"))
    assert _whole(reading.promotion, promos.stdout), promos.stdout
    status = assert_ok(reading.cli("status", "--service", "api", "--env", "stg"))
    for inst in next(r for r in assert_ok(reading.cli("status", "--json")).json()["status"]
                     if r["service"] == "api" and r["env"] == "stg")["instances"]:
        assert _whole(inst["id"], status.stdout) and _whole(inst["address"], status.stdout), status.stdout
    assert max(len(line) for line in status.stdout.splitlines()) <= 80, status.stdout


# ---- show by prefix ---------------------------------------------------------------------------------------

def test_show_takes_a_unique_prefix_like_git(reading: Reading) -> None:
    full = assert_ok(reading.cli("show", reading.good, "--json")).json()
    prefix = reading.good[: len("deploy-20261122-031502")]
    assert full == assert_ok(reading.cli("show", prefix, "--json")).json()
    human = assert_ok(reading.cli("show", prefix))
    assert human.stdout.startswith(reading.good), human.stdout

    promo = assert_ok(reading.cli("show", "promote-", "--json")).json()["promotion"]
    assert promo["id"] == reading.promotion and promo["state"] == "completed"
    assert {r["repo"] for r in promo["repos"]} == {"api", "web"}
    human = assert_ok(reading.cli("show", reading.promotion[:-3]))
    assert reading.promotion in human.stdout and "api" in human.stdout


def test_an_ambiguous_prefix_is_one_line_naming_the_candidates(reading: Reading) -> None:
    line = assert_one_error(reading.cli("show", "deploy-"), 2)
    assert "ambiguous" in line and reading.good in line and reading.bad in line, line
    line = assert_one_error(reading.cli("show", "deploy-1999"), 2)
    assert "no deployment, promotion or release 'deploy-1999'" in line, line


# ---- --json on every read command --------------------------------------------------------------------------

def shape(value: Any) -> Any:
    """The structure of JSON data (keys and types, not values): what must not change between runs."""
    if isinstance(value, dict):
        return {k: shape(v) for k, v in sorted(value.items())}
    if isinstance(value, list):
        shapes = {json.dumps(shape(v), sort_keys=True) for v in value}
        return sorted(shapes)
    return "number" if isinstance(value, int | float) and not isinstance(value, bool) else type(value).__name__


READS: dict[str, tuple[tuple[str, ...], set[str]]] = {
    "status": (("status",), {"status"}),
    "history": (("history",), {"deployments"}),
    "history-promotions": (("history", "--promotions"), {"promotions"}),
    "show": (("show", "{good}"), {"deployment", "steps", "events", "checklist"}),
    "show-promotion": (("show", "{promotion}"), {"promotion"}),
    "env-show": (("env", "show", "api", "--env", "stg"), {"service", "env", "values", "missing"}),
    "secrets-list": (("secrets", "list", "--env", "stg"), {"env", "secrets"}),
    "secrets-diff": (("secrets", "diff", "stg", "prod"), {"envs", "names", "only_in"}),
    "repos-status": (("repos", "status"), {"repos"}),
    "repos-list": (("repos", "list"), {"repos"}),
    "agent-status": (("agent", "status"), {"running"}),
    "config-validate": (("config", "validate"), {"file", "ok", "problems"}),
    "config-schema": (("config", "schema"), {"$schema", "properties"}),
    "notify-worker": (("notify", "worker", "--drain", "--timeout", "5"), {"delivered", "failed", "empty",
                                                                         "outbox"}),
    "notify-test": (("notify", "test", "hook"), {"channel", "sent", "status", "detail"}),
}
SUPERSET = {"agent-status", "status", "config-schema"}   # others own these outputs: required keys only


@pytest.mark.parametrize("name", list(READS))
def test_read_command_json_is_valid_and_stable(reading: Reading, name: str) -> None:
    args, keys = READS[name]
    argv = [a.format(good=reading.good, promotion=reading.promotion) for a in args]
    first = assert_ok(reading.cli(*argv, "--json")).json()
    second = assert_ok(reading.cli(*argv, "--json")).json()
    assert isinstance(first, dict)
    if name in SUPERSET:
        assert keys <= set(first), sorted(first)
    else:
        assert set(first) == keys, sorted(first)
    assert shape(first) == shape(second), f"the shape of `{' '.join(argv)} --json` changed between two runs"
    assert TOKEN[1] not in json.dumps(first)


def test_secrets_get_json_reveals_on_purpose(reading: Reading) -> None:
    got = assert_ok(reading.cli("secrets", "get", TOKEN[0], "--env", "stg", "--json")).json()
    assert got == {"env": "stg", "name": TOKEN[0], "provider": got["provider"], "value": TOKEN[1]}
    assert assert_ok(reading.cli("secrets", "get", TOKEN[0], "--env", "stg")).stdout == TOKEN[1] + "\n"


def test_logs_json_is_one_object_per_line(reading: Reading) -> None:
    res = assert_ok(reading.cli("logs", "api", "--env", "stg", "--lines", "5", "--json"))
    items = [json.loads(line) for line in res.stdout.splitlines()]
    assert items and all(set(i) == {"instance", "line"} for i in items), res.stdout
    ids = {i["instance"] for i in items}
    assert len(ids) == 3, ids       # the three instances serving
