"""The `shipyard` command: wires the per-noun modules into one Typer app and owns the error boundary.

Every ShipyardError becomes one line on stderr and its exit code (2 usage/config, 1 failed), and so does
an OSError that reaches this edge (a path too long, a directory not writable, a disk full: exit 1, the
message and the path); anything else is a bug and keeps its traceback so it gets reported.
"""

from __future__ import annotations

import importlib
import sys

import typer

from shipyard.cli import agent, config_cmd, demo, deploy, env, history, logs, promote, render, repos, secrets, status
from shipyard.cli import notify as notify_cli
from shipyard.cli import watch as watch_cli
from shipyard.errors import OSFailure, ShipyardError

app = typer.Typer(name="shipyard", help="Promote, deploy with zero downtime, watch, roll back, record.",
                  no_args_is_help=True, pretty_exceptions_enable=False, add_completion=False)
app.command("init")(config_cmd.init_cmd)
app.add_typer(config_cmd.app, name="config")
app.command("deploy")(deploy.deploy_cmd)
app.command("rollback")(promote.rollback_cmd)      # a service, or every repo back to a tag with --to
app.command("recover")(deploy.recover_cmd)
app.command("status")(status.status_cmd)
app.command("history")(history.history_cmd)
app.command("show")(history.show_cmd)
app.command("logs")(logs.logs_cmd)
app.add_typer(agent.app, name="agent")
app.add_typer(secrets.app, name="secrets")
app.add_typer(env.app, name="env")
app.command("demo")(demo.demo_cmd)
app.command("promote")(promote.promote_cmd)
app.add_typer(promote.hotfix_app, name="hotfix")
app.command("unfreeze")(promote.unfreeze_cmd)
app.add_typer(repos.app, name="repos")
app.add_typer(notify_cli.app, name="notify")
app.command("watch")(watch_cli.watch_cmd)


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
