"""Router generations that lose their keeper in the middle of a handover.

The test is the keeper: it starts real router generations (`python -m shipyard.proxy.process`), lends
them a real listening socket over the real channel, and then dies at each point of a handover by
closing its channels. Whatever the point, exactly one generation must be left serving the admin socket
and waiting on router-handoff.sock for the next keeper, and it must be the newest one that serves.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from shipyard.ipc import bind_unix
from shipyard.proxy.channel import Channel, Message, pair
from shipyard.proxy.paths import ProxyPaths
from shipyard.proxy.table import RouteRecord, save_table

DEADLINE = 20.0


@dataclass
class Gen:
    """One router generation as its keeper sees it."""

    number: int
    proc: subprocess.Popen[bytes]
    channel: Channel
    hello: asyncio.Event = field(default_factory=asyncio.Event)
    serving: asyncio.Event = field(default_factory=asyncio.Event)


class FakeKeeper:
    """The keeper's side of the channel protocol, with one listening socket to lend."""

    def __init__(self, state_dir: Path) -> None:
        self.paths = ProxyPaths(state_dir)
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.listen = f"127.0.0.1:{self.listener.getsockname()[1]}"
        save_table(self.paths.table, [RouteRecord(service="api", env="dev", listen=self.listen)])
        self.admin = bind_unix(self.paths.router_sock)
        self.gens: list[Gen] = []

    def spawn(self, number: int) -> Gen:
        mine, theirs = pair()
        log = (self.paths.state_dir / "router.log").open("ab")
        proc = subprocess.Popen(
            [sys.executable, "-m", "shipyard.proxy.process", "--state-dir", str(self.paths.state_dir),
             "--channel-fd", str(theirs.fileno()), "--admin-fd", str(self.admin.fileno()),
             "--generation", str(number)],
            stdout=log, stderr=subprocess.STDOUT, pass_fds=(theirs.fileno(), self.admin.fileno()),
            start_new_session=True)
        log.close()
        theirs.close()
        gen: Gen

        def on_message(msg: Message, fds: list[int]) -> None:
            for fd in fds:
                os.close(fd)
            op = msg.get("op")
            if op == "hello":
                gen.hello.set()
            elif op == "serving":
                gen.serving.set()
            elif op == "listener":
                gen.channel.reply(msg, {"ok": True, "listen": self.listen}, [self.listener.fileno()])
            elif op in ("keep", "release"):
                gen.channel.reply(msg, {"ok": True})

        gen = Gen(number, proc, Channel(mine, on_message, lambda: None))
        gen.channel.start()
        self.gens.append(gen)
        return gen

    async def serving(self, number: int, predecessor: Gen | None = None) -> Gen:
        gen = self.spawn(number)
        await asyncio.wait_for(gen.hello.wait(), DEADLINE)
        gen.channel.send({"op": "go", "predecessor": predecessor.proc.pid if predecessor else None})
        await asyncio.wait_for(gen.serving.wait(), DEADLINE)
        return gen

    def die(self, *last: tuple[Gen, Message]) -> None:
        """The keeper's last messages, then its end: every channel closes at once (an exec, a kill)."""
        for gen, msg in last:
            gen.channel.send(msg)
        for gen in self.gens:
            gen.channel.close()

    def close(self) -> None:
        for gen in self.gens:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(gen.proc.pid, 9)
            gen.proc.wait(DEADLINE)
        self.listener.close()
        self.admin.close()


@pytest.fixture(name="keeper")
async def keeper_fixture(tmp_path: Path) -> AsyncIterator[FakeKeeper]:
    k = FakeKeeper(tmp_path)
    try:
        yield k
    finally:
        k.close()


async def _adopt(paths: ProxyPaths) -> dict[str, Any]:
    """What the next keeper is handed on router-handoff.sock (waits for a generation to offer it)."""
    deadline = time.monotonic() + DEADLINE
    while True:
        try:
            conn = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
            conn.settimeout(DEADLINE)
            conn.connect(str(paths.handoff))
            data, fds, _, _ = socket.recv_fds(conn, 65536, 64)
            for fd in fds:
                os.close(fd)
            msg: dict[str, Any] = json.loads(data)
            msg["fds"] = len(fds)
            return msg
        except OSError:
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.05)


async def _admin_status(paths: ProxyPaths) -> dict[str, Any]:
    async with httpx.AsyncClient(transport=httpx.AsyncHTTPTransport(uds=str(paths.router_sock)),
                                 timeout=DEADLINE) as http:
        result: dict[str, Any] = (await http.get("http://router/v1/status")).json()
        return result


async def _exits(gen: Gen) -> int:
    deadline = time.monotonic() + DEADLINE
    while (code := gen.proc.poll()) is None:
        assert time.monotonic() < deadline, f"generation {gen.number} did not exit"
        await asyncio.sleep(0.05)
    return code


async def _handed_over(keeper: FakeKeeper, *, go: bool) -> tuple[Gen, Gen]:
    """Generation 1 serving, then a handover to a standby generation 2 up to release-admin (and go)."""
    old = await keeper.serving(1)
    new = keeper.spawn(2)
    await asyncio.wait_for(new.hello.wait(), DEADLINE)
    await old.channel.request({"op": "release-admin"}, timeout=DEADLINE)
    if go:
        new.channel.send({"op": "go", "predecessor": old.proc.pid})
        await asyncio.wait_for(new.serving.wait(), DEADLINE)
    return old, new


async def test_retire_and_the_keepers_end_in_one_read_leave_the_successor_to_be_adopted(
        keeper: FakeKeeper) -> None:
    """A keeper that re-executes right after a handover: its `retire` to the old generation and the end
    of every channel arrive together. The old one must retire, never take router-handoff.sock (nor
    remove the successor's when it exits)."""
    old, new = await _handed_over(keeper, go=True)
    keeper.die((old, {"op": "retire", "timeout": 5}))
    assert new.proc.poll() is None

    assert await _exits(old) == 0
    offer = await _adopt(keeper.paths)
    assert (offer["generation"], offer["listens"], offer["fds"]) == (2, [keeper.listen], 2)
    assert (await _admin_status(keeper.paths))["generation"] == 2


async def test_a_keeper_dead_before_the_successor_went_leaves_the_old_one_serving_its_admin(
        keeper: FakeKeeper) -> None:
    """Dead between release-admin and go: the standby exits; the old generation finds nobody on the
    admin socket, takes it back (changes allowed again) and waits for the next keeper."""
    old, new = await _handed_over(keeper, go=False)
    keeper.die()

    assert await _exits(new) == 0
    offer = await _adopt(keeper.paths)
    assert (offer["generation"], offer["listens"]) == (1, [keeper.listen])
    status = await _admin_status(keeper.paths)
    assert (status["generation"], status["handing_over"]) == (1, False)
    assert old.proc.poll() is None


async def test_a_keeper_dead_before_telling_the_old_one_to_retire_leaves_only_the_successor(
        keeper: FakeKeeper) -> None:
    """Dead between the successor's `serving` and the old one's `retire`: the old generation sees a
    newer one on the admin socket and retires by itself; only the successor waits to be adopted."""
    old, new = await _handed_over(keeper, go=True)
    keeper.die()

    assert await _exits(old) == 0
    offer = await _adopt(keeper.paths)
    assert (offer["generation"], offer["listens"]) == (2, [keeper.listen])
    assert new.proc.poll() is None
