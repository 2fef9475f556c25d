"""`python -m shipyard.proxy.keeperd --state-dir DIR`: the keeper process (see keeper.py) and its
control socket, keeper.sock: one JSON object per line in, one per line out.

    {"op": "status"}                        -> keeper, agent and router processes
    {"op": "start-agent"}                   -> run the agent (again) if it is not running
    {"op": "restart", "routers": true, "agent": true, "keeper": true}
                                            -> router handover, agent restart and (after the answer) the
                                               keeper itself re-executed, all on the installed code
    {"op": "stop", "budget": 60}            -> full stop (instances, agent, routers), then the keeper exits

Signals: SIGTERM/SIGINT = stop (what `systemctl stop` sends), SIGHUP = restart (`systemctl reload`).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import fcntl
import json
import logging
import os
import signal
import sys
from pathlib import Path
from typing import Any

from shipyard.ipc import LockHeld, acquire_pidfile, bind_unix, release_pidfile

from .keeper import Keeper
from .paths import ProxyPaths

log = logging.getLogger("shipyard.keeper")

MAX_REQUEST = 64 * 1024
CLI_MODULE = "shipyard.cli.main"    # run as a command, never imported: the keeper stays small


class Control:
    def __init__(self, keeper: Keeper, lock: int) -> None:
        self.keeper = keeper
        self.lock = lock
        self.tasks: set[asyncio.Task[Any]] = set()
        self._restart = asyncio.Lock()
        self.reexec = False

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            line = await reader.readline()
            request = json.loads(line) if line else {}
            if not isinstance(request, dict):
                raise ValueError("a JSON object is required")
            answer = await self.answer(request)
        except (ValueError, TimeoutError) as exc:
            answer = {"error": str(exc) or type(exc).__name__}
        except Exception as exc:       # a bug here must not end the keeper
            log.exception("control request failed")
            answer = {"error": f"internal keeper error: {type(exc).__name__}: {exc}"}
        with contextlib.suppress(ConnectionError):
            writer.write(json.dumps(answer).encode() + b"\n")
            await writer.drain()
            writer.close()
        if self.reexec:
            reexec(self.lock, self.keeper.router_workers)           # the answer went out first

    async def answer(self, request: dict[str, Any]) -> dict[str, Any]:
        op = request.get("op")
        k = self.keeper
        if op == "status":
            return k.status()
        if op == "start-agent":
            if k.stopping:
                return {"error": "the keeper is stopping"}
            return {"ok": True, "agent": k.start_agent()}
        if op == "restart":
            if request.get("router_workers") is not None:
                # The next generation (this handover's) runs that many; a re-executed keeper keeps it.
                try:
                    k.router_workers = _workers(str(request["router_workers"]))
                except argparse.ArgumentTypeError as exc:
                    raise ValueError(str(exc)) from None
            out = await self.restart(bool(request.get("routers", True)), bool(request.get("agent", True)))
            self.reexec = bool(request.get("keeper", False))
            return {**out, "keeper": "re-executing" if self.reexec else "kept"}
        if op == "stop":
            await k.stop(float(request.get("budget") or 60.0))
            return {"ok": True}
        raise ValueError(f"unknown op {op!r}")

    async def restart(self, routers: bool, agent: bool) -> dict[str, Any]:
        async with self._restart:
            out: dict[str, Any] = {"ok": True}
            if routers:
                out["routers"] = await self.keeper.handover()
            if agent:
                await self.keeper.restart_agent()
            out["agent"] = self.keeper.agent_status()
            return out

    def spawn(self, coro: Any) -> None:
        task = asyncio.ensure_future(coro)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)


def recover_argv(state_dir: Path, config: Path | None) -> list[str] | None:
    """`shipyard recover` for the project owning this state dir (<root>/.shipyard/agent)."""
    if config is None and state_dir.parent.name == ".shipyard":
        guess = state_dir.parent.parent / "shipyard.yaml"
        config = guess if guess.exists() else None
    if config is None:
        return None
    return [sys.executable, "-m", CLI_MODULE, "recover", "--json", "--config", str(config)]


def reexec(lock: int, router_workers: int) -> None:
    """Become a keeper running the installed code, with the same pid (what systemd tracks) and the same
    lock (its fd survives exec): the routers keep serving and hand their sockets to the new image, the
    agent stays our child and is adopted by it."""
    argv = [a for a in sys.orig_argv[1:] if a != "--resume"]
    for option in ("--lock-fd", "--router-workers"):
        if option in argv:
            i = argv.index(option)
            del argv[i:i + 2]
    os.set_inheritable(lock, True)
    argv = [sys.executable, *argv, "--router-workers", str(router_workers), "--resume", "--lock-fd", str(lock)]
    log.info("re-executing the keeper: %s", " ".join(argv))
    logging.shutdown()
    os.execv(sys.executable, argv)


async def serve(keeper: Keeper, lock: int) -> None:
    loop = asyncio.get_running_loop()
    control = Control(keeper, lock)
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, lambda: control.spawn(keeper.stop()))
    loop.add_signal_handler(signal.SIGHUP, lambda: control.spawn(control.restart(True, True)))  # not the keeper
    await keeper.start()
    reaper = asyncio.create_task(_reap_forever(keeper))
    server = await asyncio.start_unix_server(control.handle, sock=bind_unix(keeper.paths.keeper_sock),
                                             limit=MAX_REQUEST)
    log.info("keeper %s ready on %s", keeper.status()["pid"], keeper.paths.keeper_sock)
    try:
        await keeper.done.wait()
        if control.tasks:           # let the answer to `stop` go out
            await asyncio.wait(set(control.tasks), timeout=5.0)
    finally:
        reaper.cancel()
        server.close()
        keeper.close()


async def _reap_forever(keeper: Keeper) -> None:
    while True:
        await asyncio.sleep(5.0)
        keeper.reap_strays()


def _workers(value: str) -> int:
    """`auto` (one per CPU this process may run on, as HAProxy's nbthread) or a number from 1 to 64."""
    if value == "auto":
        return max(1, min(64, len(os.sched_getaffinity(0))))
    if not value.isdigit() or not 1 <= int(value) <= 64:
        raise argparse.ArgumentTypeError(f"router workers must be 'auto' or a number from 1 to 64, not {value!r}")
    return int(value)


def _inherited_lock(fd: int) -> int:
    """The keeper.pid lock held across an exec: same open file, same flock, same pid inside."""
    os.set_inheritable(fd, False)
    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)   # already ours: succeeds at once
    return fd


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m shipyard.proxy.keeperd",
                                     description="keeps a shipyard host serving: listeners, routers, agent")
    parser.add_argument("--state-dir", required=True, type=Path)
    parser.add_argument("--project-config", type=Path, help="shipyard.yaml whose dead runs to recover "
                                                            "after an agent crash")
    parser.add_argument("--agent-module", default="shipyard.agent",
                        help="module run as the agent ('' for none: routers only)")
    parser.add_argument("--router-workers", default="auto", type=_workers,
                        help="processes serving each router generation's traffic: 'auto' (one per CPU, "
                             "the default) or 1-64")
    parser.add_argument("--resume", action="store_true", help=argparse.SUPPRESS)   # set by re-exec
    parser.add_argument("--lock-fd", type=int, help=argparse.SUPPRESS)              # the lock it holds
    parser.add_argument("--log-level", default="INFO")
    args = parser.parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), stream=sys.stderr,
                        format="%(asctime)s %(levelname)s keeper: %(message)s")
    paths = ProxyPaths(args.state_dir.resolve())
    paths.ensure_dir()
    try:
        lock = _inherited_lock(args.lock_fd) if args.lock_fd is not None else acquire_pidfile(paths.keeper_pid)
    except LockHeld as held:
        print(f"shipyard keeper: another keeper (pid {held.pid or '?'}) is already running for "
              f"{paths.state_dir}", file=sys.stderr)
        return 3
    try:
        keeper = Keeper(paths, agent_module=args.agent_module or None,
                        recover_argv=recover_argv(paths.state_dir, args.project_config), resume=args.resume,
                        router_workers=args.router_workers)
        asyncio.run(serve(keeper, lock))
    except OSError as exc:
        print(f"shipyard keeper: {exc}", file=sys.stderr)
        return 1
    finally:
        release_pidfile(paths.keeper_pid, lock)
    log.info("keeper exited")
    return 0


if __name__ == "__main__":
    sys.exit(main())
