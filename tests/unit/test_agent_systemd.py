"""The systemd unit of `shipyard agent install`, as data and through systemd's own checker."""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from shipyard.agent.systemd import ALREADY_RUNNING, Unit, quote
from shipyard.testing.cli import run_cli

pytestmark = pytest.mark.timeout(120)


def _unit(root: Path, **kw: object) -> Unit:
    return Unit(project="gli", root=root, state_dir=root / ".shipyard" / "agent", config=root / "shipyard.yaml",
                **kw)  # type: ignore[arg-type]


def _lines(text: str) -> dict[str, str]:
    return dict(line.split("=", 1) for line in text.splitlines() if "=" in line and not line.startswith("#"))


def test_unit_runs_the_keeper_and_survives_its_crash(tmp_path: Path) -> None:
    root = tmp_path / "my projects" / "gli 100%x"
    unit = _unit(root)
    fields = _lines(unit.text())
    argv = shlex.split(fields["ExecStart"].replace("%%", "%"))
    assert argv[:3] == [sys.executable, "-m", "shipyard.proxy.keeperd"]
    assert argv[argv.index("--state-dir") + 1] == str(root / ".shipyard" / "agent")
    assert argv[argv.index("--project-config") + 1] == str(root / "shipyard.yaml")
    assert fields["Restart"] == "always" and fields["RestartPreventExitStatus"] == str(ALREADY_RUNNING)
    assert fields["KillMode"] == "process"        # a keeper crash must not take routers and apps with it
    assert fields["ExecReload"] == "/bin/kill -HUP $MAINPID"
    assert fields["WorkingDirectory"] == str(root).replace("%", "%%")
    assert fields["WantedBy"] == "default.target" and "User" not in fields
    system = _lines(_unit(root, system=True, user="deploy").text())
    assert (system["WantedBy"], system["User"]) == ("multi-user.target", "deploy")
    assert unit.name.startswith("shipyard-gli-") and unit.name.endswith(".service")
    assert unit.name != _unit(tmp_path / "other").name          # two checkouts, two units
    assert quote("a b") == '"a b"' and quote("$HOME") == "$$HOME" and quote("100%") == "100%%"


def test_a_fleet_hosts_unit_is_a_system_unit_without_a_project(tmp_path: Path) -> None:
    from shipyard.hosts.hostctl import _unit as host_unit
    unit = host_unit(tmp_path / "srv" / "shipyard")
    fields = _lines(unit.text())
    argv = shlex.split(fields["ExecStart"])
    assert argv[argv.index("--state-dir") + 1] == str(tmp_path / "srv" / "shipyard" / "agent")
    assert "--project-config" not in argv            # a host has no project to recover: the controller does
    assert fields["WantedBy"] == "multi-user.target" and fields["Restart"] == "always"
    assert str(unit.path(Path("/root"))).startswith("/etc/systemd/system/")


@pytest.mark.skipif(shutil.which("systemd-analyze") is None and os.environ.get("CI") != "true",
                    reason="systemd-analyze is not installed")
@pytest.mark.parametrize("kind", ["project", "fleet host"])
def test_systemd_accepts_the_unit(tmp_path: Path, kind: str) -> None:
    from shipyard.hosts.hostctl import _unit as host_unit
    root = tmp_path / "my projects" / "gli 100%x"
    root.mkdir(parents=True)
    unit = _unit(root) if kind == "project" else host_unit(root)
    path = tmp_path / unit.name
    path.write_text(unit.text())
    proc = subprocess.run(["systemd-analyze", "verify", str(path)], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr


def test_agent_install_writes_a_user_unit(tmp_path: Path) -> None:
    project = tmp_path / "proj"
    project.mkdir()
    env = {"HOME": str(tmp_path / "home"), "PATH": os.environ["PATH"], "NO_COLOR": "1", "COLUMNS": "200"}
    assert run_cli(project, "init", env=env).returncode == 0
    printed = run_cli(project, "agent", "install", "--print", env=env)
    assert printed.returncode == 0, str(printed)
    assert "ExecStart=" in printed.stdout and not (tmp_path / "home" / ".config").exists()
    res = run_cli(project, "agent", "install", env=env)
    assert res.returncode == 0, str(res)
    written = list((tmp_path / "home" / ".config" / "systemd" / "user").glob("shipyard-*.service"))
    assert len(written) == 1 and written[0].read_text() == printed.stdout.rstrip("\n") + "\n"
    assert f"wrote {written[0]}" in res.stdout
