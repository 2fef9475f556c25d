"""Secrets reach the instances and never anything shipyard stores or prints (issue 5, "Done when").

A demo workspace whose api service gets its values from the local encrypted store and the env provider;
its build, hooks and app print them. After deploys (one rolled back by a hook that fails while printing a
secret), status, history, show, env show and an agent restart with an instance crash, every byte under
.shipyard (database and its WAL, agent state, instance logs, release files) and every byte printed is
searched: zero occurrences. The values do reach the instances (their /proc environ), never their argv.
"""

from __future__ import annotations

import json
import os
import re
import signal
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest

from shipyard.agent.daemon import agent_status, stop_agent
from shipyard.demo.workspace import Workspace, create_workspace
from shipyard.ipc import free_port
from shipyard.testing.wait import wait_until

try:
    from .test_secrets_support import Result, cli_env, new_master_key, run_cli, scan
except ImportError:
    from test_secrets_support import Result, cli_env, new_master_key, run_cli, scan  # type: ignore[no-redef]

pytestmark = pytest.mark.timeout(300)

SECRETS = {"JWT_SECRET": "jwt-Zq8v2LmN4xR7pK", "DB_PASSWORD": "db-pw-Hh3Tt9Ww1Yy5"}
ENV_SECRET = ("API_TOKEN", "tok-Ee6Rr2Uu8Ii4Oo")          # from the env provider (CI style)
HOOKS = """\
    build: 'echo "build sees $JWT_SECRET"'
    env: {DB_URL: "pg://app:${secret:DB_PASSWORD}@db/app", GREETING: hello}
    requires_env: [JWT_SECRET, API_TOKEN, JWT_PRIVATE_KEY]
    hooks:
      after_install: 'echo "after_install sees $JWT_SECRET $DB_URL $API_TOKEN"; echo "$JWT_PRIVATE_KEY"'
      validate_service: 'echo "validating with $JWT_SECRET"; test -z "$FAIL_VALIDATE"'
      on_failure: 'echo "on_failure sees $DB_URL"'
"""




def configure(ws: Workspace, hooks: str, secrets_line: str) -> None:
    text = ws.config_path.read_text()
    anchor = "  api:\n    repo: api\n"
    assert anchor in text
    text = text.replace(anchor, anchor + hooks, 1)
    run = re.search(r'    run: "(.*) app\.py"\n', text)
    assert run is not None
    wrapped = f"sh -c 'echo app sees $JWT_SECRET $DB_URL $API_TOKEN; exec {run.group(1)} app.py'"
    text = text.replace(run.group(0), f"    run: {json.dumps(wrapped)}\n", 1)
    ws.config_path.write_text(text + secrets_line)


@pytest.fixture
def workspace(tmp_path: Path) -> Iterator[Workspace]:
    ws = create_workspace(tmp_path / "ws", api_port=free_port(), web_port=free_port())
    try:
        yield ws
    finally:
        agent_dir = ws.root / ".shipyard" / "agent"
        if agent_dir.is_dir() and agent_status(agent_dir):
            stop_agent(agent_dir, stop_instances=True, timeout=30)


def instance_pids(ws: Workspace) -> dict[str, int]:
    st = agent_status(ws.root / ".shipyard" / "agent") or {}
    return {i["id"]: i["pid"] for i in st.get("instances", []) if i.get("pid") and i["state"] == "running"}


def proc_bytes(pid: int, name: str) -> bytes:
    try:
        return Path(f"/proc/{pid}/{name}").read_bytes()
    except OSError:
        return b""


def test_no_secret_value_is_stored_or_printed(workspace: Workspace) -> None:
    ws = workspace
    configure(ws, HOOKS, "secrets: {provider: local, also: [env], env_prefix: SHIPYARD_SECRET_}\n")
    env = cli_env(SHIPYARD_MASTER_KEY=new_master_key(), **{f"SHIPYARD_SECRET_{ENV_SECRET[0]}": ENV_SECRET[1]})
    printed: list[Result] = []

    def cli(*args: str, stdin: str | None = None, code: int = 0, **extra: str) -> Result:
        res = run_cli(ws.root, *args, env={**env, **extra}, stdin=stdin)
        assert res.returncode == code, str(res)
        assert "Traceback" not in res.stderr, str(res)
        printed.append(res)
        return res

    for name, value in SECRETS.items():
        cli("secrets", "set", name, "--env", "stg", stdin=value + "\n")
    cli("secrets", "generate", "--env", "stg", "--jwt-rsa", "JWT")
    private_key = run_cli(ws.root, "secrets", "get", "JWT_PRIVATE_KEY", "--env", "stg", env=env).stdout.strip()
    assert private_key.startswith("-----BEGIN PRIVATE KEY-----")        # `get` prints it: its purpose
    body = [line for line in private_key.splitlines() if not line.startswith("-----")]
    values = [*SECRETS.values(), ENV_SECRET[1], *body]

    cli("deploy", "api", "--env", "stg")
    first = cli("deploy", "api", "--env", "stg", "--json")
    assert json.loads(first.stdout)["state"] == "succeeded"
    pids = instance_pids(ws)
    assert len(pids) >= 3            # the new set, and the previous one kept warm
    for pid in pids.values():      # the values reach the instances through their environment, never argv
        assert SECRETS["DB_PASSWORD"].encode() in proc_bytes(pid, "environ")
        assert all(v.encode() not in proc_bytes(pid, "cmdline") for v in values)
        assert b"SHIPYARD_REDACT" not in proc_bytes(pid, "environ")

    failed = cli("deploy", "api", "--env", "stg", "--set", "FAIL_VALIDATE=1", "--json", code=1)
    assert json.loads(failed.stdout)["state"] == "rolled_back"
    refused = cli("deploy", "api", "--env", "stg", "--set", f"JWT_SECRET={SECRETS['JWT_SECRET']}", code=2)
    assert "secrets never go on the command line" in refused.stderr
    printed.remove(refused)        # the refused argv itself carried the value (the user typed it)

    # The agent restarts; then an instance crashes and is restarted from the sealed state.
    agent_dir = ws.root / ".shipyard" / "agent"
    os.kill(agent_status(agent_dir)["pid"], signal.SIGKILL)
    cli("agent", "start")
    victim, pid = next(iter(instance_pids(ws).items()))
    os.killpg(pid, signal.SIGKILL)
    wait_until(lambda: instance_pids(ws).get(victim, pid) != pid, 30, "the crashed instance to restart")
    restarted = instance_pids(ws)[victim]
    assert SECRETS["JWT_SECRET"].encode() in proc_bytes(restarted, "environ")
    log = agent_dir / "logs" / f"{victim}.log"
    wait_until(lambda: log.read_text().count("app sees *** ***") >= 2, 15, "the restarted app's masked line")

    for args in (("status",), ("status", "--json"), ("history",), ("history", "--json"),
                 ("env", "show", "api", "--env", "stg"), ("env", "show", "api", "--env", "stg", "--json"),
                 ("secrets", "list", "--env", "stg"), ("secrets", "diff", "stg", "prod"),
                 ("agent", "status", "--json")):
        cli(*args)
    history = json.loads(cli("history", "--json").stdout)["deployments"]
    for dep in history:
        cli("show", dep["id"], "--output")
        cli("show", dep["id"], "--json")
    shown = "".join(r.stdout for r in printed if r.args[:1] == ("show",))
    assert "after_install sees *** *** ***" in shown and "validating with ***" in shown
    assert any("***" in (d["reason"] or "") for d in history if d["state"] == "rolled_back")
    cli("agent", "stop")

    hits = scan(ws.root / ".shipyard", values)
    assert hits == [], f"secret values stored in: {hits}"
    assert list((ws.root / ".shipyard" / "releases").rglob(".shipyard-build.log"))
    assert any("app sees *** ***" in p.read_text() for p in (agent_dir / "logs").glob("*.log"))
    out = "".join(r.stdout + r.stderr for r in printed)
    assert [v for v in values if v in out] == []


def test_missing_values_fail_the_deploy_at_once_with_nothing_started(workspace: Workspace) -> None:
    ws = workspace
    configure(ws, '    env: {BUCKET: "", DB_URL: "pg://app:${secret:DB_PASSWORD}@db"}\n'
                  "    requires_env: [JWT_SECRET, WS_PORT, BUCKET]\n", "")
    env = cli_env(SHIPYARD_MASTER_KEY=new_master_key())
    res = run_cli(ws.root, "deploy", "api", "--env", "stg", env=env)
    assert res.returncode == 2, str(res)
    lines = [line for line in res.stderr.splitlines() if line.strip()]
    assert lines == ["error: api/stg: missing or empty: JWT_SECRET, WS_PORT, BUCKET, DB_PASSWORD (declare them "
                     "under services.api.env or set them with `shipyard secrets set NAME --env stg`)"], str(res)
    assert not (ws.root / ".shipyard" / "agent" / "state.json").exists()     # no agent, no instance
    db = ws.root / ".shipyard" / "state.db"
    if db.exists():
        con = sqlite3.connect(db)
        assert con.execute("SELECT count(*) FROM deployments").fetchone() == (0,)
    shown = run_cli(ws.root, "env", "show", "api", "--env", "stg", "--json", env=env)
    data = json.loads(shown.stdout)
    assert data["missing"] == ["JWT_SECRET", "WS_PORT", "BUCKET", "DB_PASSWORD"]


def test_reveal_shows_values_and_is_audited(workspace: Workspace) -> None:
    ws = workspace
    configure(ws, "    requires_env: [JWT_SECRET]\n", "")
    env = cli_env(SHIPYARD_MASTER_KEY=new_master_key())
    assert run_cli(ws.root, "secrets", "set", "JWT_SECRET", "--env", "stg", env=env,
                   stdin=SECRETS["JWT_SECRET"]).returncode == 0
    masked = run_cli(ws.root, "env", "show", "api", "--env", "stg", env=env)
    assert SECRETS["JWT_SECRET"] not in masked.stdout and "secret:local" in masked.stdout
    shown = run_cli(ws.root, "env", "show", "api", "--env", "stg", "--reveal", "--json", env=env)
    assert shown.returncode == 0, str(shown)
    values = {v["name"]: v for v in json.loads(shown.stdout)["values"]}
    assert values["JWT_SECRET"] == {"name": "JWT_SECRET", "source": "secret:local", "secret": True,
                                    "value": SECRETS["JWT_SECRET"], "missing": False}
    con = sqlite3.connect(ws.root / ".shipyard" / "state.db")
    rows = con.execute("SELECT kind, service, env, message, data FROM events WHERE kind LIKE 'secrets.%' "
                       "ORDER BY id").fetchall()
    assert [(r[0], r[1], r[2]) for r in rows] == [("secrets.set", "*", "stg"), ("secrets.revealed", "api", "stg")]
    data = json.loads(rows[1][4])
    assert data == {"actor": "tester", "names": ["JWT_SECRET"]}
    assert scan(ws.root / ".shipyard", [SECRETS["JWT_SECRET"]]) == []
