"""`shipyard notify worker|test`: deliver the outbox, and check a channel end to end.

Until the daemon exists, `notify worker` is how queued notifications leave the machine (deploy commands
also drain briefly on their way out). Channel settings may hold `${secret:NAME}` references; they are
resolved here, through the project's secret providers, and registered with the redactor.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

import typer

from shipyard.cli import render
from shipyard.cli.aio import run
from shipyard.cli.project import Project
from shipyard.errors import UsageError
from shipyard.notify.channels import build_channel
from shipyard.notify.message import Message
from shipyard.notify.outbox import idempotency_key
from shipyard.notify.worker import Worker
from shipyard.store import outbox as ob

app = typer.Typer(help="Deliver notifications and test channels.", no_args_is_help=True)
ConfigOpt = Annotated[Path | None, typer.Option("--config", "-c", help="Path to shipyard.yaml.")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print the result as JSON.")]
DRAIN_AFTER_DEPLOY = 5.0


def channel_resolver(project: Project) -> Callable[[str], str]:
    """`${secret:NAME}` in channel settings -> the value from the first environment's providers that has it."""
    return lambda text: project.secrets.fill(text, "notification channel")


def make_worker(project: Project) -> Worker:
    return Worker(project.store, project.config.notifications, channel_resolver(project),
                  decorate=link_decorator(project))


def link_decorator(project: Project) -> Any:
    """The signed approval links' hook (None without `approval_links` or a URL to point them at); a
    secret that resolves to nothing is MissingSecretsError, naming it."""
    links = project.config.approval_links
    base = (links.url or project.config.notifications.dashboard_url) if links is not None else None
    if links is None or not base:
        return None
    from shipyard.notify.approval_links import decorator

    return decorator(project.secrets.fill(links.secret, "approval_links.secret"), base, links.expires)


@contextlib.asynccontextmanager
async def delivering(project: Project, when: bool) -> AsyncIterator[None]:
    """Deliver the outbox while the block runs (when `when`): a deploy into a gated env may wait hours
    for people, and they must hear of it (approval.requested) then, not when it ends. Never an error: a
    worker that cannot be made (a link secret missing) leaves the rows to `notify worker` or the daemon."""
    if not when or not project.config.notifications.routes:
        yield
        return
    stop = asyncio.Event()
    try:
        task: asyncio.Task[None] | None = asyncio.create_task(make_worker(project).run_forever(stop))
    except Exception:
        task = None
    try:
        yield
    finally:
        stop.set()
        if task is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(task, DRAIN_AFTER_DEPLOY)


async def drain_quietly(project: Project, timeout: float = DRAIN_AFTER_DEPLOY) -> None:
    """What deploy commands run on their way out: bounded, and never an error (the rows stay queued)."""
    if not project.config.notifications.routes:
        return
    with contextlib.suppress(Exception):
        await make_worker(project).drain(timeout)


def worker_cmd(
    drain: Annotated[bool, typer.Option("--drain", help="Exit once nothing is pending (or --timeout passes).")]
    = False,
    timeout: Annotated[float, typer.Option("--timeout", help="With --drain: give up waiting after this many "
                                                             "seconds.")] = 60.0,
    as_json: JsonOpt = False,
    config: ConfigOpt = None,
) -> None:
    """Deliver queued notifications (until Ctrl-C, or until the outbox is empty with --drain)."""
    project = Project.load(config)
    worker = make_worker(project)

    async def go() -> bool:
        if drain:
            return await worker.drain(timeout)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.add_signal_handler(sig, stop.set)
        await worker.run_forever(stop)
        return True

    empty = run(go())
    with project.store.session() as s:
        counts = ob.counts(s)
    if as_json:
        render.print_json({"delivered": worker.sent, "failed": worker.failed, "empty": empty,
                           "outbox": {state: counts[state] for state in (ob.PENDING, ob.DELIVERED, ob.FAILED)}})
    else:
        render.info(f"delivered {worker.sent}, failed {worker.failed}; outbox: {counts[ob.PENDING]} pending, "
                    f"{counts[ob.DELIVERED]} delivered, {counts[ob.FAILED]} failed")
    if drain and not empty:
        raise typer.Exit(1)


def test_cmd(
    channel: Annotated[str, typer.Argument(help="Channel name (a key of notifications.channels).")],
    as_json: JsonOpt = False,
    config: ConfigOpt = None,
) -> None:
    """Send a test message to CHANNEL now (no outbox, no retries): exit 1 with the reason if it fails."""
    project = Project.load(config)
    channels = project.config.notifications.channels
    if channel not in channels:
        raise UsageError(f"unknown channel {channel!r} (known: {', '.join(sorted(channels)) or 'none'})")
    now = datetime.now(UTC)
    message = Message(kind="notify.test", service="shipyard", env="-", severity="info",
                      text=f"Test message from shipyard ({project.config.project})", at=now.isoformat(),
                      idempotency_key=idempotency_key(None, channel, now.isoformat()),
                      dashboard_url=project.config.notifications.dashboard_url,
                      data={"actor": _actor()})
    sender = build_channel(channel, channels[channel], channel_resolver(project))
    delivery: Any = run(sender.send(message))
    if as_json:
        render.print_json({"channel": channel, "sent": True, "status": delivery.status, "detail": delivery.detail})
    else:
        render.info(f"sent a test message to {channel} ({delivery.status or 'ok'})")


def _actor() -> str:
    from shipyard.cli.project import actor

    return actor()


app.command("worker")(worker_cmd)
app.command("test")(test_cmd)
