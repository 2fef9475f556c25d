"""Run on a host by `shipyard hosts setup` (as `<root>/venv/bin/python -m shipyard.hosts.hostctl`): start
the host's keeper and agent (the keeper restarts the agent when it dies), restart them onto a newly
installed runtime, or stop everything (instances, agent, keeper), and print the agent's status as one JSON
line for the controller. A deploy runs `ensure` itself when a host's agent does not answer.

Where systemd runs, the keeper is a system unit (enabled, so the host comes back after a reboot);
elsewhere (containers, the test hosts' namespaces) it is started detached by ensure_agent, as on a laptop.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

from shipyard.agent.daemon import agent_status, ensure_agent, restart_agent, stop_agent
from shipyard.agent.systemd import Unit, systemd_running
from shipyard.errors import ShipyardError


def _unit(root: Path) -> Unit:
    return Unit(project="host", root=root, state_dir=root / "agent", config=None, system=True)


def _systemd(root: Path) -> bool:
    """Install and start the keeper's unit; False where systemd does not run here."""
    if not systemd_running():
        return False
    unit = _unit(root)
    path = unit.path(Path("/root"))
    text = unit.text()
    if not path.exists() or path.read_text() != text:
        path.write_text(text)
        subprocess.run(["systemctl", "daemon-reload"], check=True)
    subprocess.run(["systemctl", "enable", "--now", unit.name], check=True)
    return True


def _stop(root: Path) -> bool:
    """Everything on this host stops; where systemd runs the unit is disabled too (else it would come back)."""
    if systemd_running():
        unit = _unit(root)
        if unit.path(Path("/root")).exists():
            subprocess.run(["systemctl", "disable", "--now", unit.name], check=True)
    return stop_agent(root / "agent", stop_instances=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="shipyard.hosts.hostctl")
    parser.add_argument("action", choices=["ensure", "restart", "status", "stop"])
    parser.add_argument("--root", required=True, type=Path)
    args = parser.parse_args(argv)
    state = args.root / "agent"
    try:
        if args.action == "status":
            status = agent_status(state)
        elif args.action == "stop":
            status = {"stopped": _stop(args.root)}
        else:
            managed = _systemd(args.root) if args.action == "ensure" else False
            if args.action == "restart" and agent_status(state) is not None:
                restart_agent(state)
            ensure_agent(state, timeout=30.0)
            status = agent_status(state) or {}
            status["systemd"] = managed
    except (ShipyardError, OSError, subprocess.CalledProcessError) as exc:
        print(json.dumps({"error": str(exc)}))
        return 1
    print(json.dumps({"status": status}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
