"""The `shipyard` command: wires the per-noun modules into one Typer app and owns the error boundary.

Every ShipyardError becomes one line on stderr and its exit code (2 usage/config, 1 failed), and so does
an OSError that reaches this edge (a path too long, a directory not writable, a disk full: exit 1, the
message and the path); anything else is a bug and keeps its traceback so it gets reported.
"""

from __future__ import annotations

import importlib
import os
import sys
from collections.abc import Iterator, MutableMapping
from typing import Annotated, Any

import typer
import typer.main
from typer.core import TyperGroup

from shipyard.cli import render
from shipyard.errors import OSFailure, ShipyardError

Command = Any       # click's Command: typer's vendored copy (typer >= 0.2x) or click itself (older typer)

# Every command, in the order help lists them (commands, then groups of subcommands, as Typer orders
# them): name -> "module:attribute" under shipyard.cli, the attribute a command function or a typer.Typer.
# A module is imported only when one of its commands runs (help imports them all): every `shipyard` call
# pays for its own command only, so `config validate` never loads SQLAlchemy and `status` never loads the
# planners, the fleet or the notification channels.
COMMANDS: dict[str, str] = {
    "init": "config_cmd:init_cmd",
    "deploy": "deploy:deploy_cmd",
    "release": "release:release_cmd",
    "rollback": "promote:rollback_cmd",      # a service, or every repo back to a tag with --to
    "recover": "deploy:recover_cmd",
    "cancel": "deploy:cancel_cmd",
    "approve": "approve:approve_cmd",
    "status": "status:status_cmd",
    "history": "history:history_cmd",
    "show": "history:show_cmd",
    "report": "report:report_cmd",
    "prune": "prune:prune_cmd",
    "logs": "logs:logs_cmd",
    "demo": "demo:demo_cmd",
    "promote": "promote:promote_cmd",
    "unfreeze": "promote:unfreeze_cmd",
    "watch": "watch:watch_cmd",
    "serve": "serve:serve_cmd",
    "config": "config_cmd:app",
    "agent": "agent:app",
    "secrets": "secrets:app",
    "env": "env:app",
    "hotfix": "promote:hotfix_app",
    "repos": "repos:app",
    "notify": "notify:app",
    "hosts": "hosts:app",
    "tokens": "tokens:app",
    "checklist": "checklist:app",
    "grafana": "grafana:app",
    "aws": "aws:app",
    "ecr": "ecr:app",
    "ci": "ci:app",
}


def load_command(name: str, target: str) -> Command:
    """The click command `name` for `target`, built exactly as `app.command(name)` or `app.add_typer(sub,
    name=name)` on the root would have built it (same Typer defaults as the root)."""
    module, _, attr = target.partition(":")
    obj = getattr(importlib.import_module(f"shipyard.cli.{module}"), attr)
    holder = typer.Typer(add_completion=False, pretty_exceptions_enable=False)
    if isinstance(obj, typer.Typer):
        holder.add_typer(obj, name=name)
    else:
        holder.command(name)(obj)
    return typer.main.get_group(holder).commands[name]


class LazyCommands(MutableMapping[str, Command]):
    """The root group's commands: every name known at once, each command built on first use."""

    def __init__(self, targets: dict[str, str]) -> None:
        self._targets = dict(targets)
        self._built: dict[str, Command] = {}

    def __getitem__(self, name: str) -> Command:
        if name not in self._built:
            self._built[name] = load_command(name, self._targets[name])   # KeyError: no such command
        return self._built[name]

    def __setitem__(self, name: str, command: Command) -> None:
        self._targets.setdefault(name, "")
        self._built[name] = command

    def __delitem__(self, name: str) -> None:
        del self._targets[name]
        self._built.pop(name, None)

    def __iter__(self) -> Iterator[str]:
        return iter(self._targets)

    def __len__(self) -> int:
        return len(self._targets)


class LazyGroup(TyperGroup):
    def __init__(self, **attrs: Any) -> None:
        super().__init__(**attrs)
        self.commands = LazyCommands(COMMANDS)


def _version(value: bool) -> None:
    if value:
        from shipyard import __version__

        sys.stdout.write(f"shipyard {__version__}\n")
        raise typer.Exit()


def _root(version: Annotated[bool, typer.Option(
        "--version", callback=_version, is_eager=True, help="Print shipyard's version and exit.")] = False,
          server: Annotated[str | None, typer.Option(
              "--server", envvar="SHIPYARD_SERVER", show_envvar=True,
              help="A `shipyard serve` URL: deploy, rollback, cancel, approve, recover, promote, hotfix sync, "
                   "unfreeze, status, history and show go through its API (the token in SHIPYARD_TOKEN).")]
          = None) -> None:
    """Promote, deploy with zero downtime, watch, roll back, record."""
    if server:
        os.environ["SHIPYARD_SERVER"] = server      # read by shipyard.cli.remote in the command's module


app = typer.Typer(name="shipyard", help="Promote, deploy with zero downtime, watch, roll back, record.",
                  cls=LazyGroup, callback=_root, no_args_is_help=True, pretty_exceptions_enable=False,
                  add_completion=False)


def _click_errors() -> tuple[type[Exception], ...]:
    """click's exception base: typer >= 0.2x vendors click as typer._click; older typer uses click itself."""
    found: list[type[Exception]] = []
    for module in ("typer._click.exceptions", "click"):
        try:
            found.append(importlib.import_module(module).ClickException)
        except (ImportError, AttributeError):
            continue
    return tuple(found)


def run() -> None:
    try:
        # Non-standalone mode returns the code of a `typer.Exit` instead of exiting with it.
        code = app(standalone_mode=False)
    except ShipyardError as exc:
        render.error(str(exc))
        sys.exit(exc.exit_code)
    except OSError as exc:
        failure = OSFailure.of(exc)
        render.error(str(failure))
        sys.exit(failure.exit_code)
    except typer.Exit as exc:
        sys.exit(exc.exit_code)
    except typer.Abort:
        render.error("aborted")
        sys.exit(1)
    except KeyboardInterrupt:
        render.error("interrupted; an unfinished deployment is rolled back by `shipyard recover`")
        sys.exit(130)
    except Exception as exc:  # click's usage errors arrive here in non-standalone mode
        if not isinstance(exc, _click_errors()):
            raise
        message = exc.format_message()  # type: ignore[attr-defined]
        ctx = getattr(exc, "ctx", None)
        if message and ctx is not None:
            message += f" (see `{ctx.command_path} --help`)"
        if message:  # empty when help was printed instead (no arguments at all)
            render.error(message)
        sys.exit(getattr(exc, "exit_code", 2))
    sys.exit(code if isinstance(code, int) else 0)


if __name__ == "__main__":
    run()
