"""The systemd unit `shipyard agent install` writes: the keeper as a service, so the host comes back
after a reboot or a crash of the keeper itself. Pure text building, checked as data (and by
`systemd-analyze verify` where it is installed).

KillMode=process: on `systemctl stop` the keeper gets SIGTERM and stops the instances, the agent and
the routers itself, in order; if the keeper crashes, systemd must not kill the routers and apps in its
cgroup: the restarted keeper adopts the running router (its sockets are handed over) and agent.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from pathlib import Path

from shipyard.proxy import keeper_argv

ALREADY_RUNNING = 3      # the keeper's exit code when another keeper holds the state dir


def quote(arg: str) -> str:
    """One ExecStart argument: specifiers (%) and variables ($) taken literally, spaces quoted."""
    text = arg.replace("\\", "\\\\").replace('"', '\\"').replace("%", "%%").replace("$", "$$")
    return f'"{text}"' if re.search(r"\s|;", text) or not text else text


def literal(text: str) -> str:
    """A whole-line value (a path, a description): only specifiers need escaping, spaces are fine."""
    return text.replace("%", "%%").replace("\n", " ")


def unit_name(project: str, state_dir: Path) -> str:
    """Stable per project checkout: two checkouts of one project get two units."""
    safe = re.sub(r"[^A-Za-z0-9_.-]", "-", project)[:40] or "project"
    digest = hashlib.sha256(str(state_dir).encode()).hexdigest()[:8]
    return f"shipyard-{safe}-{digest}.service"


@dataclass(frozen=True)
class Unit:
    project: str
    root: Path
    state_dir: Path
    config: Path | None           # the project whose dead runs the keeper recovers (None: a fleet host)
    system: bool = False         # a system unit (runs as `user`) instead of a user unit
    user: str | None = None
    router_workers: str | None = None

    @property
    def name(self) -> str:
        return unit_name(self.project, self.state_dir)

    def text(self) -> str:
        exec_start = " ".join(quote(a) for a in keeper_argv(self.state_dir, self.config, self.router_workers))
        lines = [
            f"# Written by `shipyard agent install` for {literal(str(self.root))}.",
            "[Unit]",
            f"Description={literal(f'shipyard keeper (routers and agent) of {self.project} in {self.root}')}",
            "After=network-online.target",
            "Wants=network-online.target",
            "",
            "[Service]",
            "Type=simple",
            f"ExecStart={exec_start}",
            "ExecReload=/bin/kill -HUP $MAINPID",
            f"WorkingDirectory={literal(str(self.root))}",
            "Environment=PYTHONUNBUFFERED=1",
            "Restart=always",
            "RestartSec=1",
            f"RestartPreventExitStatus={ALREADY_RUNNING}",
            "KillMode=process",
            "TimeoutStopSec=120",
        ]
        if self.system and self.user:
            lines.append(f"User={self.user}")
        lines += ["", "[Install]", f"WantedBy={'multi-user.target' if self.system else 'default.target'}", ""]
        return "\n".join(lines)

    def path(self, home: Path) -> Path:
        if self.system:
            return Path("/etc/systemd/system") / self.name
        return home / ".config" / "systemd" / "user" / self.name

    def commands(self) -> list[str]:
        """What to run to start it (not run for the user: a keeper started by a command may be running)."""
        ctl = "systemctl" if self.system else "systemctl --user"
        return [f"{ctl} daemon-reload", f"{ctl} enable --now {self.name}"]


def systemd_running() -> bool:
    return Path("/run/systemd/system").is_dir()
