"""Every process shipyard starts begins with a scrubbed environment (issue 8, section 4).

The CLI runs in a shell full of what a CI job or a laptop holds: AWS keys, a GitHub token, the local
store's master key, the env provider's variables (one the service uses, one it does not) and unrelated
junk. A real deploy then starts the agent, instances with their log processes, a build, a migration,
hooks, git (shipyard's mirror fetch and export) and an exec health probe, and a `repos status` runs
fleet git. Each child's environment is read as it saw it: /proc/<pid>/environ for the long-lived ones,
`env` written to a file by the short-lived ones (git through a wrapper first on PATH). None holds a
value or name it should not; each still has what it needs (PATH, HOME, the service's own values, git's
GIT_* settings).
"""

from __future__ import annotations

import json
import re
import shutil
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from shipyard.agent.daemon import agent_status, stop_agent
from shipyard.demo.workspace import Workspace, create_workspace
from shipyard.ipc import free_port

try:
    from .test_secrets_support import cli_env, new_master_key, run_cli
except ImportError:
    from test_secrets_support import cli_env, new_master_key, run_cli  # type: ignore[no-redef]

pytestmark = pytest.mark.timeout(300)

DB_PASSWORD = "db-pw-Qm7Xc2Vb9Nz4"                  # local store: the service declares it
API_TOKEN = "api-tok-Lp3Ws8Ke1Rt6"                  # env provider: CI_SECRET_API_TOKEN, declared
POISON = {
    "AWS_ACCESS_KEY_ID": "AKIAPOISON0000000001",
    "AWS_SECRET_ACCESS_KEY": "aws-secret-Pz9Yx8Ww7Vv6",
    "AWS_SESSION_TOKEN": "aws-session-Tq5Rr4Ss3",
    "GITHUB_TOKEN": "ghp_poisonGh1Jk2Lm3Nn4",
    "GH_TOKEN": "gho_poisonGh5Jk6Lm7",
    "CI_SECRET_UNUSED": "unused-provider-Hh2Gg3",   # the env provider's prefix, a name no service uses
    "DEPLOY_JUNK": "junk-Cc4Dd5Ee6",                 # not known to be a secret: not allowed either
    "GIT_HTTP_PASSWORD": "git-pw-Ff7Gg8Hh9",         # allowed family (GIT_*), secret-looking name
}
KEEP = {"GIT_CONFIG_NOSYSTEM": "1", "LC_MEASUREMENT": "C"}   # allowed: git settings, locale




@pytest.fixture
def workspace(tmp_path: Path) -> Iterator[Workspace]:
    ws = create_workspace(tmp_path / "ws", api_port=free_port(), web_port=free_port())
    try:
        yield ws
    finally:
        agent_dir = ws.root / ".shipyard" / "agent"
        if agent_dir.is_dir() and agent_status(agent_dir):
            stop_agent(agent_dir, stop_instances=True, timeout=30)


def configure(ws: Workspace, dump: Path) -> None:
    """Build, migrate, hooks and an exec health probe that each write what their environment held."""
    probe = (f"env > {dump}/probe.$$.env; {sys.executable} -c \"import os, urllib.request; "
             "urllib.request.urlopen('http://' + os.environ['HEALTH_ADDRESS'] + '/health', timeout=1)\"")
    text = ws.config_path.read_text()
    anchor = "  api:\n    repo: api\n"
    hooks = "".join(f"      {name}: 'env > {dump}/hook-{name}.env'\n"
                    for name in ("before_install", "after_install", "validate_service"))
    text = text.replace(anchor, anchor + f"    build: 'env > {dump}/build.env'\n"
                        f"    migrate: 'env > {dump}/migrate.env'\n"
                        "    requires_env: [DB_PASSWORD, API_TOKEN]\n"
                        f"    hooks:\n{hooks}", 1)
    health = re.search(r"    health: \{type: http, path: /health,[^}]*\}\n", text)
    assert health is not None
    text = text.replace(health.group(0), f"    health: {{type: exec, command: {json.dumps(probe)}, interval: 0.2s, "
                        "timeout: 5s, healthy_threshold: 1, start_period: 10s}\n", 1)
    ws.config_path.write_text(text + "secrets: {provider: local, also: [env], env_prefix: CI_SECRET_}\n")


def git_wrapper(bin_dir: Path, dump: Path) -> None:
    real = shutil.which("git")
    assert real is not None
    bin_dir.mkdir()
    wrapper = bin_dir / "git"
    wrapper.write_text(f'#!/bin/sh\nenv > "{dump}/git.$$.env"\nexec {real} "$@"\n')
    wrapper.chmod(0o755)


def environ_of(pid: int) -> dict[str, str]:
    raw = Path(f"/proc/{pid}/environ").read_bytes()
    return dict(item.split("=", 1) for item in raw.decode("utf-8", "replace").split("\0") if "=" in item)


def env_file(path: Path) -> dict[str, str]:
    """`env` output (a value with a newline spills into the next lines: kept whole enough for names)."""
    out: dict[str, str] = {}
    for line in path.read_text().splitlines():
        name, sep, value = line.partition("=")
        if sep and re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name):
            out[name] = value
    return out


def logpipe_pids(ws: Workspace) -> list[int]:
    pids = []
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                cmdline = (proc / "cmdline").read_bytes()
            except OSError:
                continue
            if b"shipyard.agent.logpipe" in cmdline and str(ws.root).encode() in cmdline:
                pids.append(int(proc.name))
    return pids


def leaks(env: dict[str, str], *, own_secrets: bool) -> list[str]:
    """What of the shell's secrets this environment holds (its own values are fine where `own_secrets`)."""
    found = [f"{k} (name)" for k in env if k in POISON or k in ("SHIPYARD_MASTER_KEY", "CI_SECRET_API_TOKEN")]
    bad_values = [*POISON.values(), *([] if own_secrets else [DB_PASSWORD, API_TOKEN])]
    found += [f"{k} holds {v}" for k, value in env.items() for v in bad_values if v in value]
    return found


def test_every_child_starts_with_a_scrubbed_environment(workspace: Workspace, tmp_path: Path) -> None:
    ws = workspace
    dump = tmp_path / "dump"
    dump.mkdir()
    configure(ws, dump)
    git_wrapper(tmp_path / "bin", dump)
    master = new_master_key()
    base = cli_env(SHIPYARD_MASTER_KEY=master)
    env = {**base, **POISON, **KEEP, "CI_SECRET_API_TOKEN": API_TOKEN,
           "PATH": f"{tmp_path / 'bin'}:{base['PATH']}"}
    res = run_cli(ws.root, "secrets", "set", "DB_PASSWORD", "--env", "stg", env=env, stdin=DB_PASSWORD + "\n")
    assert res.returncode == 0, str(res)
    res = run_cli(ws.root, "deploy", "api", "--env", "stg", "--json", env=env)
    assert res.returncode == 0 and json.loads(res.stdout)["state"] == "succeeded", str(res)
    res = run_cli(ws.root, "repos", "status", env=env)
    assert res.returncode == 0, str(res)

    seen: dict[str, tuple[dict[str, str], bool]] = {}   # who -> (environment, may hold the app's secrets)
    status = agent_status(ws.root / ".shipyard" / "agent")
    assert status is not None
    seen["agent"] = (environ_of(status["pid"]), False)
    running = [i for i in status["instances"] if i["state"] == "running"]
    assert running
    for inst in running:
        seen[f"instance {inst['id']}"] = (environ_of(inst["pid"]), True)
    pipes = logpipe_pids(ws)
    assert pipes, "the instances have secrets, so their output goes through log processes"
    for pid in pipes:
        seen[f"logpipe {pid}"] = (environ_of(pid), True)    # it holds the values it masks, by design
    for name in ("build", "migrate", "hook-before_install", "hook-after_install", "hook-validate_service"):
        seen[name] = (env_file(dump / f"{name}.env"), True)
    probes = sorted(dump.glob("probe.*.env"))
    gits = sorted(dump.glob("git.*.env"))
    assert probes and gits
    seen.update({f"probe {p.name}": (env_file(p), True) for p in probes[:3]})
    seen.update({f"git {p.name}": (env_file(p), False) for p in gits})

    problems = {who: found for who, (environ, own) in seen.items() if (found := leaks(environ, own_secrets=own))}
    assert not problems, json.dumps(problems, indent=1)
    for who, (environ, _) in seen.items():
        assert environ.get("PATH") and environ.get("HOME"), who
    for inst in running:       # the app still gets its own values, under its own names
        environ = seen[f"instance {inst['id']}"][0]
        assert (environ["DB_PASSWORD"], environ["API_TOKEN"]) == (DB_PASSWORD, API_TOKEN)
        assert environ["LC_MEASUREMENT"] == "C"
    assert all(seen[f"git {p.name}"][0].get("GIT_CONFIG_NOSYSTEM") == "1" for p in gits)
    assert seen["hook-after_install"][0]["API_TOKEN"] == API_TOKEN
