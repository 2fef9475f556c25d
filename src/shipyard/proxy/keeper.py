"""`python -m shipyard.proxy.keeper --state-dir DIR`: the small, boring process that keeps a host serving.

One keeper per agent state dir. It does four things and nothing else:
- holds the listening sockets of every router (listeners.py) and router.sock, so a router process can
  die or be replaced without a port ever closing: connections wait in the backlog meanwhile;
- runs the router processes (process.py): one active generation, one warm standby that takes over
  within milliseconds when the active one dies, and on `restart` a new generation that takes the same
  sockets before the old one stops accepting (graceful handover, zero failed requests);
- runs the agent and starts it again (with backoff) when it dies other than on request, then runs
  the project's `shipyard recover`, so runs whose owner died with it are finished or rolled back;
- answers a line-JSON control socket (keeper.sock, 0600) for status, restart, stop and agent start.
Routing itself, state and HTTP live elsewhere; what is here should rarely need to change, which is
what makes it safe to leave running while everything around it is upgraded.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import signal
import socket
import sys
import time
from typing import Any

import shipyard
from shipyard.ipc import SocketName, bind_unix, pidfile_holder

from . import children
from .channel import Channel, ChannelClosed, Message, pair
from .children import Backoff, Child
from .listeners import ListenerTable
from .paths import ProxyPaths

log = logging.getLogger("shipyard.keeper")

HANDOVER_TIMEOUT = 30.0     # a new generation must be serving by then, or the old one stays
STANDBY_DELAY = 1.0         # seconds after a takeover before the next standby is started
RESUME_WAIT = 5.0           # seconds a re-executed keeper waits for its router's handoff socket
SPARE_DELAY = 10.0          # ... and after a start or handover: it would compete with what starts then


class Keeper:
    def __init__(self, paths: ProxyPaths, *, agent_module: str | None, recover_argv: list[str] | None,
                 resume: bool = False, router_workers: int = 1) -> None:
        self.paths = paths
        self.router_workers = router_workers
        self.resume = resume        # this process image replaced the previous keeper's (exec)
        self.agent_module = agent_module
        self.recover_argv = recover_argv
        self.listeners = ListenerTable()
        self.admin: socket.socket | None = None
        self.routers: list[Child] = []
        self.agent: Child | None = None
        self.agent_wanted = agent_module is not None
        self.agent_restarting = False
        self.agent_restarts = 0
        self.agent_timer: asyncio.TimerHandle | None = None
        self.recover: Child | None = None
        self.generation = 0
        self.go_next = False        # the next router to say hello takes over at once (none is active)
        self.spare_timer: asyncio.TimerHandle | None = None
        self.stopping = False
        self.started_at = time.time()
        self.done: asyncio.Event = asyncio.Event()
        self.router_backoff = Backoff(free=3, initial=0.5, maximum=5.0, reset_after=10.0)
        self.agent_backoff = Backoff(free=1, initial=0.5, maximum=30.0, reset_after=30.0)
        self._tasks: set[asyncio.Task[Any]] = set()

    # ---- start ---------------------------------------------------------------------------------
    async def start(self) -> None:
        if self.resume:
            # The previous image's channels closed at exec: the active router opens its handoff socket
            # within milliseconds. Binding anew instead would find the ports taken by that router.
            deadline = time.monotonic() + RESUME_WAIT
            while not self.paths.handoff.exists() and time.monotonic() < deadline:
                await asyncio.sleep(0.02)
        adopted = await self._adopt_router()
        if self.admin is None:
            self.admin = bind_unix(self.paths.router_sock, backlog=128)
        if adopted is None:
            self.go_next = True
            self._spawn_router()
        holder = pidfile_holder(self.paths.agent_pid)
        if holder:
            self.agent = children.adopt("agent", holder)
            if self.agent is not None:
                children.watch(self.agent, self._on_exit)
                self.agent_wanted = True
                log.info("adopted the running agent (pid %d)", holder)
        if self.agent is None and self.agent_wanted:
            self._spawn_agent()

    async def _adopt_router(self) -> Child | None:
        """Take over a router left serving by a keeper that died: it hands us its sockets."""
        if not self.paths.handoff.exists():
            return None
        conn = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        conn.settimeout(5.0)
        name = SocketName(self.paths.handoff)
        try:
            conn.connect(name.name)
            data, fds, _, _ = socket.recv_fds(conn, 65536, 64, socket.MSG_CMSG_CLOEXEC)
            msg = json.loads(data)
            if not fds or not isinstance(msg, dict):
                raise ValueError("no sockets in the handoff")
        except (OSError, ValueError) as exc:
            conn.close()
            log.warning("no router to adopt at %s (%s)", self.paths.handoff, exc)
            with contextlib.suppress(FileNotFoundError):
                self.paths.handoff.unlink()
            return None
        finally:
            name.close()
        self.admin = socket.socket(fileno=fds[0])
        for listen, fd in zip(msg.get("listens", []), fds[1:], strict=False):
            self.listeners.adopt(listen, socket.socket(fileno=fd))
        child = children.adopt("router", int(msg["pid"]))
        if child is None:
            conn.close()
            return None
        child.state, child.generation = "active", int(msg.get("generation") or 0)
        self.generation = max(self.generation, child.generation)
        self._connect(child, conn)
        children.watch(child, self._on_exit)
        self.routers.append(child)
        log.info("adopted router generation %d (pid %d, %d listeners)", child.generation, child.pid,
                 len(self.listeners.socks))
        self._spawn_router()            # its standby
        return child

    # ---- routers -------------------------------------------------------------------------------
    def _spawn_router(self) -> Child:
        assert self.admin is not None
        self.generation += 1
        mine, theirs = pair()
        argv = [sys.executable, "-m", "shipyard.proxy.process", "--state-dir", str(self.paths.state_dir),
                "--channel-fd", str(theirs.fileno()), "--admin-fd", str(self.admin.fileno()),
                "--generation", str(self.generation), "--workers", str(self.router_workers)]
        try:
            child = children.spawn("router", argv, self.paths.router_log,
                                   pass_fds=(theirs.fileno(), self.admin.fileno()))
        finally:
            theirs.close()
        loop = asyncio.get_running_loop()
        child.generation, child.hello, child.serving = self.generation, loop.create_future(), loop.create_future()
        self._connect(child, mine)
        children.watch(child, self._on_exit)
        self.routers.append(child)
        return child

    def _connect(self, child: Child, sock: socket.socket) -> None:
        def on_message(msg: Message, fds: list[int]) -> None:
            self._on_router_message(child, msg, fds)

        def on_close() -> None:
            self._on_channel_closed(child)

        child.channel = Channel(sock, on_message, on_close)
        child.channel.start()

    def _by_state(self, *states: str) -> list[Child]:
        return [r for r in self.routers if r.alive and r.state in states]

    def _go(self, child: Child, predecessor: int | None) -> None:
        child.state = "activating"
        with contextlib.suppress(ChannelClosed):
            child.channel.send({"op": "go", "predecessor": predecessor})

    def _on_router_message(self, child: Child, msg: Message, fds: list[int]) -> None:
        for fd in fds:
            os.close(fd)
        op = msg.get("op")
        if op == "hello":
            child.state = "standby"
            _resolve(child.hello)
            if self.go_next and not self.stopping:
                self.go_next = False
                self._go(child, None)
        elif op == "serving":
            child.state = "active"
            _resolve(child.serving)
            self._want_spare(SPARE_DELAY)
        elif op == "listener":
            self._lend(child, msg)
        elif op == "release":
            self.listeners.release(str(msg.get("listen")))
            child.channel.reply(msg, {"ok": True})
        elif op == "keep":
            self.listeners.keep_only([str(x) for x in msg.get("listens") or []])
            child.channel.reply(msg, {"ok": True})
        else:
            log.warning("router %d sent unknown op %r", child.pid, op)

    def _lend(self, child: Child, msg: Message) -> None:
        try:
            sock, bound = self.listeners.get_or_bind(str(msg.get("listen")))
        except (OSError, ValueError) as exc:
            child.channel.reply(msg, {"ok": False, "errno": getattr(exc, "errno", None), "error": str(exc)})
            return
        child.channel.reply(msg, {"ok": True, "listen": bound}, [sock.fileno()])

    def _on_channel_closed(self, child: Child) -> None:
        if child.alive and child.state not in ("retiring",):
            log.warning("router %d closed its channel: stopping it", child.pid)
            child.signal(signal.SIGKILL)

    def _router_exited(self, child: Child) -> None:
        self.routers.remove(child)
        was = child.state
        log.log(logging.INFO if was == "retiring" else logging.WARNING,
                "router generation %d (pid %d, %s) exited with %s", child.generation, child.pid, was,
                child.returncode)
        if self.stopping or was == "retiring":
            return
        if was in ("active", "activating") and not self._by_state("active", "activating"):
            standby = next(iter(self._by_state("standby")), None)
            if standby is not None:
                self._go(standby, None)
            else:
                self.go_next = True
        delay = self.router_backoff.next_delay(time.monotonic() - child.started)
        # A spare waits a moment when someone serves: its interpreter start would compete for CPU with
        # the generation that just took over and is working through the backlog.
        self._want_spare(delay if self.go_next else max(delay, STANDBY_DELAY))

    def _want_spare(self, delay: float = 0.0) -> None:
        """Make sure a router is starting or standing by (after `delay`)."""
        if self.stopping or self.spare_timer is not None or self._by_state("standby", "starting"):
            return
        self.spare_timer = asyncio.get_running_loop().call_later(delay, self._respawn_router)

    def _respawn_router(self) -> None:
        self.spare_timer = None
        if not self.stopping and not self._by_state("standby", "starting"):
            self._spawn_router()

    async def handover(self) -> dict[str, Any]:
        """Replace the active generation by a new one (new code) without closing a socket."""
        old = next(iter(self._by_state("active")), None)
        for spare in self._by_state("standby", "starting"):
            spare.state = "retiring"            # may run the old code: not the one to take over
            spare.signal(signal.SIGTERM)
        new = self._spawn_router()
        assert new.hello is not None and new.serving is not None
        await asyncio.wait_for(asyncio.shield(new.hello), HANDOVER_TIMEOUT)
        if old is not None and old.alive:
            old.state = "retiring"
            try:
                await old.channel.request({"op": "release-admin"}, timeout=HANDOVER_TIMEOUT)
            except (ChannelClosed, TimeoutError):
                log.error("router %d did not release the admin socket: killing it", old.pid)
                old.signal(signal.SIGKILL)
        self._go(new, old.pid if old is not None and old.alive else None)
        await asyncio.wait_for(asyncio.shield(new.serving), HANDOVER_TIMEOUT)
        if old is not None and old.alive:
            with contextlib.suppress(ChannelClosed):
                old.channel.send({"op": "retire"})
        return {"old": old.pid if old else None, "new": new.pid, "generation": new.generation}

    # ---- agent ---------------------------------------------------------------------------------
    def _spawn_agent(self) -> None:
        if self.agent_timer is not None:
            self.agent_timer.cancel()
            self.agent_timer = None
        if (self.agent is not None and self.agent.alive) or self.agent_module is None or self.stopping:
            return
        argv = [sys.executable, "-m", self.agent_module, "--state-dir", str(self.paths.state_dir)]
        self.agent = children.spawn("agent", argv, self.paths.agent_log)
        self.agent.state = "running"
        children.watch(self.agent, self._on_exit)
        log.info("agent started (pid %d)", self.agent.pid)

    def _agent_exited(self, child: Child) -> None:
        code = child.returncode
        if code is None:   # adopted: a clean exit removes agent.pid, a killed agent leaves it behind
            code = 0 if not self.paths.agent_pid.exists() else -signal.SIGKILL
        if self.stopping:
            return
        if self.agent_restarting:
            self.agent_restarting = False
            self._spawn_agent()
            return
        if code == 0:
            log.info("agent (pid %d) exited on request: not restarting it", child.pid)
            self.agent_wanted = False
            return
        other = pidfile_holder(self.paths.agent_pid)
        if other and other != child.pid:      # it lost the lock to an agent already running: adopt that
            self.agent = children.adopt("agent", other)
            if self.agent is not None:
                children.watch(self.agent, self._on_exit)
                log.info("agent (pid %d) exited: another agent (pid %d) runs, adopted", child.pid, other)
                return
        self.agent_restarts += 1
        delay = self.agent_backoff.next_delay(time.monotonic() - child.started)
        log.warning("agent (pid %d) died (%s): starting it again in %.1fs", child.pid, code, delay)
        self.agent_timer = asyncio.get_running_loop().call_later(delay, self._restart_after_crash)

    def _restart_after_crash(self) -> None:
        self._spawn_agent()
        if self.recover_argv and (self.recover is None or not self.recover.alive) and not self.stopping:
            # Runs whose owner died with the agent are finished or rolled back before anyone builds on a
            # half-moved split (a run whose owner is alive is left to it: the lease says so).
            self.recover = children.spawn("recover", self.recover_argv, self.paths.keeper_log, nice=10)
            children.watch(self.recover, self._on_exit)
            log.info("running recovery (pid %d): %s", self.recover.pid, " ".join(self.recover_argv))

    def start_agent(self) -> dict[str, Any]:
        self.agent_wanted = True
        self._spawn_agent()
        return self.agent_status()

    async def restart_agent(self) -> None:
        """Let the agent go (apps keep running) and start it again, on the code now installed."""
        agent = self.agent
        if agent is None or not agent.alive:
            self.start_agent()
            return
        self.agent_restarting = True
        agent.signal(signal.SIGHUP)          # the agent's "exit, leave the instances for the next one"
        await agent.wait(60.0)
        # Answer only once the new agent holds its lock: a keeper re-executed right after must find it.
        deadline = time.monotonic() + 60.0
        while time.monotonic() < deadline and self.agent is not None and self.agent.alive \
                and pidfile_holder(self.paths.agent_pid) != self.agent.pid:
            await asyncio.sleep(0.05)

    def agent_status(self) -> dict[str, Any]:
        a = self.agent
        state = ("running" if a is not None and a.alive else "backoff" if self.agent_timer is not None
                 else "stopped")
        return {"state": state, "pid": a.pid if a is not None and a.alive else None,
                "restarts": self.agent_restarts, "wanted": self.agent_wanted}

    # ---- exits, status, stop -------------------------------------------------------------------
    def _on_exit(self, child: Child) -> None:
        if child.role == "router":
            self._router_exited(child)
        elif child.role == "agent":
            self._agent_exited(child)
        else:
            log.info("%s (pid %d) exited with %s", child.role, child.pid, child.returncode)

    def status(self) -> dict[str, Any]:
        return {"pid": os.getpid(), "version": shipyard.__version__, "started_at": self.started_at,
                "state_dir": str(self.paths.state_dir), "stopping": self.stopping,
                "agent": self.agent_status(), "listeners": sorted(self.listeners.socks),
                "router_workers": self.router_workers,
                "routers": [{"pid": r.pid, "generation": r.generation, "state": r.state}
                            for r in self.routers if r.alive]}

    async def stop(self, timeout: float = 60.0) -> None:
        """Full stop: the agent stops its instances, routers close, the table is forgotten."""
        if self.stopping:
            await self.done.wait()
            return
        self.stopping = True
        if self.agent_timer is not None:
            self.agent_timer.cancel()
        if self.agent is not None and self.agent.alive:
            self.agent.signal(signal.SIGTERM)
            await self.agent.wait(timeout)
        for r in list(self.routers):
            r.state = "retiring"
            r.signal(signal.SIGTERM)
        await asyncio.gather(*(r.wait(10.0) for r in list(self.routers)))
        with contextlib.suppress(FileNotFoundError):
            self.paths.table.unlink()
        self.done.set()

    def reap_strays(self) -> None:
        """Reap exited children this image does not track (those of the image before an exec)."""
        tracked = {c.pid for c in [*self.routers, self.agent, self.recover] if c is not None}
        me = os.getpid()
        for name in os.listdir("/proc"):
            if not name.isdigit() or int(name) in tracked:
                continue
            with contextlib.suppress(OSError, ValueError, IndexError, ChildProcessError):
                with open(f"/proc/{name}/stat") as f:
                    fields = f.read().rsplit(")", 1)[1].split()
                if fields[0] == "Z" and int(fields[1]) == me:
                    os.waitpid(int(name), os.WNOHANG)

    def close(self) -> None:
        self.listeners.close_all()
        for path in (self.paths.router_sock, self.paths.keeper_sock):
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
        if self.admin is not None:
            self.admin.close()


def _resolve(fut: asyncio.Future[None] | None) -> None:
    if fut is not None and not fut.done():
        fut.set_result(None)
