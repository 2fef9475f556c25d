"""The `shipyard` command: wires the per-noun modules into one Typer app and owns the error boundary.

Every ShipyardError becomes one line on stderr and its exit code (2 usage/config, 1 failed); anything
else is a bug and keeps its traceback so it gets reported.
"""

from __future__ import annotations

import sys

import typer

from shipyard.cli import agent, config_cmd, deploy, demo, history, render, status
from shipyard.errors import ShipyardError

app = typer.Typer(name="shipyard", help="Promote, deploy with zero downtime, watch, roll back, record.",
                  no_args_is_help=True, pretty_exceptions_enable=False, add_completion=False)
app.command("init")(config_cmd.init_cmd)
app.add_typer(config_cmd.app, name="config")
app.command("deploy")(deploy.deploy_cmd)
app.command("rollback")(deploy.rollback_cmd)
app.command("recover")(deploy.recover_cmd)
app.command("status")(status.status_cmd)
app.command("history")(history.history_cmd)
app.command("show")(history.show_cmd)
app.add_typer(agent.app, name="agent")
app.command("demo")(demo.demo_cmd)


def run() -> None:
    try:
        app(standalone_mode=False)
    except ShipyardError as exc:
        render.error(str(exc))
        sys.exit(exc.exit_code)
    except typer.Exit as exc:
        sys.exit(exc.exit_code)
    except typer.Abort:
        render.error("aborted")
        sys.exit(1)
    except KeyboardInterrupt:
        render.error("interrupted")
        sys.exit(130)
    except Exception as exc:  # click's usage errors arrive here in non-standalone mode
        import click
        if isinstance(exc, click.ClickException):
            exc.show()
            sys.exit(2)
        raise


if __name__ == "__main__":
    run()
