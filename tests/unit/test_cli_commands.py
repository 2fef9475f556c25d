"""Meta-tests over the whole command tree: every command that only reads takes `--json`.

The tree is walked from the real Typer app, so a new command is checked the day it is registered. A
command without `--json` must be listed below as a write command, with the reason: the list is the
one place where "this command changes something" is written down, and a stale entry fails too.
"""

from __future__ import annotations

from collections.abc import Iterator

import click
import typer.main

from shipyard.cli.main import app

# Commands that change something (and print little beyond what they changed). Every other command reads,
# and must accept --json. Write commands that already have a --json summary need not be listed.
WRITE_COMMANDS: dict[str, str] = {
    "init": "writes shipyard.yaml and .gitignore",
    "agent install": "writes a systemd unit file (or prints it with --print)",
    "agent stop": "stops the agent (and its instances)",
    "secrets set": "stores a value",
    "secrets rm": "deletes a value",
    "secrets generate": "stores new values (prints only their names)",
    "watch": "runs until stopped and rolls back on alarms",
    "hosts trust": "records a host key in known_hosts",
    "serve": "runs the API until stopped",
    "grafana dashboard": "prints or writes a dashboard, which is JSON already",
    "aws policy": "prints an IAM policy document, which is JSON already",
}


def leaf_commands() -> Iterator[tuple[str, click.Command]]:
    def walk(command: click.Command, path: list[str]) -> Iterator[tuple[str, click.Command]]:
        subs = getattr(command, "commands", None)
        if subs is None:
            yield " ".join(path), command
            return
        for name, sub in sorted(subs.items()):
            yield from walk(sub, [*path, name])

    yield from walk(typer.main.get_command(app), [])


def options(command: click.Command) -> set[str]:
    return {opt for param in command.params for opt in getattr(param, "opts", [])}


def test_the_walk_sees_the_whole_tree() -> None:
    names = dict(leaf_commands())
    for expected in ("status", "history", "show", "logs", "env show", "secrets list", "repos status",
                     "repos list", "agent status", "config validate", "notify test", "notify worker"):
        assert expected in names, f"{expected} not found in {sorted(names)}"


def test_every_read_command_takes_json() -> None:
    missing = [path for path, command in leaf_commands()
               if path not in WRITE_COMMANDS and "--json" not in options(command)]
    assert not missing, (f"read commands without --json: {missing}; add the flag, or (if the command changes "
                         "something) list it in WRITE_COMMANDS with the reason")


def test_write_command_list_is_not_stale() -> None:
    names = dict(leaf_commands())
    stale = [path for path in WRITE_COMMANDS if path not in names]
    assert not stale, f"WRITE_COMMANDS names commands that no longer exist: {stale}"
    pointless = [path for path in WRITE_COMMANDS if "--json" in options(names[path])]
    assert not pointless, f"these take --json now; drop them from WRITE_COMMANDS: {pointless}"
