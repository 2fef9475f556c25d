"""`shipyard hosts list|trust|check|exec` as a user runs them, against a real sshd on 127.0.0.1.

The client key comes from `${secret:DEPLOY_SSH_KEY}` through the env secrets provider, as CI would give it.
"""

from __future__ import annotations

import os
from pathlib import Path

from ssh_helpers import sshd_fixture  # noqa: F401 - the `sshd` fixture

from shipyard.testing.cli import CliResult, run_cli
from shipyard.testing.sshd import Sshd, free_port

PREFIX = "SHIPYARD_HOSTS_TEST_"


def project(root: Path, server: Sshd, *, key: str = 'key: "${secret:DEPLOY_SSH_KEY}"', **extra_hosts: int) -> Path:
    hosts = "".join(f"  {name}: {{address: 127.0.0.1, user: {server.user}, port: {port}}}\n"
                    for name, port in {"web-1": server.port, **extra_hosts}.items())
    (root / "shipyard.yaml").write_text(
        "project: fleet\nenvironments: {prod: {branch: main}}\n"
        f"secrets: {{provider: env, env_prefix: {PREFIX}}}\n"
        f"hosts:\n{hosts}"
        f"ssh: {{{key}, connect_timeout: 5s, parallel: 4}}\n")
    return root


def cli(root: Path, server: Sshd, *args: str) -> CliResult:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SHIPYARD_")}
    env.update(CI="true", NO_COLOR="1", COLUMNS="200", PYTHONUNBUFFERED="1",
               **{PREFIX + "DEPLOY_SSH_KEY": server.client_key_path.read_text()})
    res = run_cli(root, *args, env=env, timeout=60)
    assert "Traceback" not in res.stderr, str(res)
    return res


def one_error(res: CliResult, code: int) -> str:
    assert res.returncode == code, str(res)
    assert len(res.error_lines) == 1 and res.error_lines[0].startswith("error: "), str(res)
    return res.error_lines[0]


def test_trust_then_exec_and_check(sshd: Sshd, tmp_path: Path) -> None:
    root = project(tmp_path, sshd, **{"down-1": free_port()})
    known = root / ".shipyard" / "known_hosts"
    line = one_error(cli(root, sshd, "hosts", "exec", "web-1", "--", "true"), 1)
    assert "unknown host key" in line and sshd.fingerprint in line and "shipyard hosts trust web-1" in line

    # No terminal and no --fingerprint: shown, never recorded blindly.
    line = one_error(cli(root, sshd, "hosts", "trust", "web-1"), 2)
    assert sshd.fingerprint in line and "--fingerprint" in line and not known.exists()
    line = one_error(cli(root, sshd, "hosts", "trust", "web-1", "--fingerprint", "SHA256:not-this-one"), 1)
    assert sshd.fingerprint in line and "nothing recorded" in line and not known.exists()
    assert cli(root, sshd, "hosts", "trust", "web-1", "--fingerprint", sshd.fingerprint).returncode == 0
    assert f"[127.0.0.1]:{sshd.port} ssh-ed25519 " in known.read_text()
    again = cli(root, sshd, "hosts", "trust", "web-1")      # the recorded key: nothing to confirm
    assert again.returncode == 0 and "already trusted" in again.stdout, str(again)
    listed = cli(root, sshd, "hosts", "list", "--json").json()["hosts"]
    assert [(h["name"], h["trusted"]) for h in listed] == [("web-1", True), ("down-1", False)]

    res = cli(root, sshd, "hosts", "exec", "web-1", "--", "printf", "%s\\n", "a b", "$(id)", "it's")
    assert res.returncode == 0, str(res)
    assert res.stdout.splitlines() == ["web-1 | a b", "web-1 | $(id)", "web-1 | it's"]

    # What a host prints passes the redactor: the SSH key (a secret) never shows.
    res = cli(root, sshd, "hosts", "exec", "web-1", "--", "cat", str(sshd.client_key_path))
    key_lines = sshd.client_key_path.read_text().splitlines()
    assert res.returncode == 0 and key_lines[1] not in res.stdout and "***" in res.stdout, str(res)

    res = cli(root, sshd, "hosts", "exec", "--all", "--", "sh", "-c", "echo hi; echo warn >&2; exit 3")
    assert res.returncode == 1, str(res)
    assert "web-1  | hi" in res.stdout and "web-1  | warn" in res.stderr and "web-1  | exit status 3" in res.stderr
    assert "down-1 | error: down-1" in res.stderr and "connection refused" in res.stderr

    every = cli(root, sshd, "hosts", "check", "--min-free-mb", "1", "--json")
    assert every.returncode == 1, str(every)
    assert [(h["host"], h["reachable"], h["ok"]) for h in every.json()["hosts"]] == [
        ("web-1", True, True), ("down-1", False, False)]
    host = every.json()["hosts"][0]
    assert host["key_trusted"] and host["auth_ok"] and host["problems"] == []
    assert host["free_bytes"] > 2**20 and abs(host["clock_skew_seconds"]) < 2
    assert "connection refused" in every.json()["hosts"][1]["problems"][0]
    too_much = cli(root, sshd, "hosts", "check", "web-1", "--min-free-mb", str(2**40))
    assert too_much.returncode == 1 and "MiB free" in too_much.stderr, str(too_much)


def test_a_changed_host_key_is_refused_until_replaced(sshd: Sshd, tmp_path: Path) -> None:
    root = project(tmp_path, sshd, key=f"key_file: {sshd.client_key_path}")      # the key from a file this time
    old = sshd.fingerprint
    assert cli(root, sshd, "hosts", "trust", "web-1", "--fingerprint", old).returncode == 0
    sshd.restart(new_key=True)
    new = sshd.fingerprint
    assert new != old

    line = one_error(cli(root, sshd, "hosts", "exec", "web-1", "--", "true"), 1)
    assert "HOST KEY CHANGED" in line and new in line and old in line and "--replace" in line
    line = one_error(cli(root, sshd, "hosts", "trust", "web-1", "--fingerprint", new), 1)
    assert "HOST KEY CHANGED" in line and "--replace" in line
    check = cli(root, sshd, "hosts", "check", "--json")
    assert check.returncode == 1 and check.json()["hosts"][0]["key_trusted"] is False

    assert cli(root, sshd, "hosts", "trust", "web-1", "--replace", "--fingerprint", new).returncode == 0
    assert old not in (root / ".shipyard" / "known_hosts").read_text()
    res = cli(root, sshd, "hosts", "exec", "web-1", "--", "echo", "back")
    assert res.returncode == 0 and res.stdout == "web-1 | back\n", str(res)


def test_usage_errors_are_one_line(sshd: Sshd, tmp_path: Path) -> None:
    root = project(tmp_path, sshd)
    assert "unknown host 'nope'" in one_error(cli(root, sshd, "hosts", "exec", "nope", "--", "true"), 2)
    assert "give a host and a command" in one_error(cli(root, sshd, "hosts", "exec", "web-1"), 2)
