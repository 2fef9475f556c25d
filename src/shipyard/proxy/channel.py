"""Keeper <-> router and router lead <-> worker channels: a SOCK_SEQPACKET socketpair carrying small
JSON messages and fds.

SEQPACKET keeps message boundaries (one send is one recv) and passes fds with SCM_RIGHTS, so a listening
socket moves between processes as a message attachment. Requests carry an `id`; the answer carries
`re` with that id. Received fds are close-on-exec, so they never leak into processes spawned later.
End of file on the channel means the other process is gone: both sides act on that, never on a timeout.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import logging
import os
import socket
from collections.abc import Callable
from typing import Any

log = logging.getLogger(__name__)

MAX_MESSAGE = 64 * 1024
MAX_FDS = 64
Message = dict[str, Any]
Handler = Callable[[Message, list[int]], None]


def pair() -> tuple[socket.socket, socket.socket]:
    return socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)


class ChannelClosed(ConnectionError):
    pass


class Channel:
    """One end of the pair, driven by the running event loop; `on_message` gets what is not an answer."""

    def __init__(self, sock: socket.socket, on_message: Handler, on_close: Callable[[], None]) -> None:
        self.sock = sock
        self.sock.setblocking(False)
        self._on_message = on_message
        self._on_close = on_close
        self._ids = itertools.count(1)
        self._waiting: dict[int, asyncio.Future[tuple[Message, list[int]]]] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self.closed = False

    def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._loop.add_reader(self.sock.fileno(), self._readable)

    def send(self, message: Message, fds: list[int] | tuple[int, ...] = ()) -> None:
        if self.closed:
            raise ChannelClosed("channel closed")
        data = json.dumps(message).encode()
        try:
            # Messages are tiny and the peer reads at once; a full buffer means a stuck peer.
            if fds:
                socket.send_fds(self.sock, [data], list(fds))
            else:
                self.sock.send(data)
        except (BlockingIOError, BrokenPipeError, ConnectionError) as exc:
            raise ChannelClosed(f"cannot send to the peer: {exc}") from exc

    async def request(self, message: Message, timeout: float = 10.0,
                      fds: list[int] | tuple[int, ...] = ()) -> tuple[Message, list[int]]:
        """Send (with `fds` attached) and wait for the answer (and its fds, which the caller then owns)."""
        assert self._loop is not None, "start() the channel first"
        rid = next(self._ids)
        fut = self._loop.create_future()
        self._waiting[rid] = fut
        try:
            self.send({**message, "id": rid}, fds)
            return await asyncio.wait_for(fut, timeout)
        finally:
            self._waiting.pop(rid, None)

    def reply(self, request: Message, answer: Message, fds: list[int] | tuple[int, ...] = ()) -> None:
        self.send({**answer, "re": request.get("id")}, fds)

    def _readable(self) -> None:
        while True:
            try:
                data, fds, _flags, _addr = socket.recv_fds(self.sock, MAX_MESSAGE, MAX_FDS,
                                                           socket.MSG_DONTWAIT | socket.MSG_CMSG_CLOEXEC)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                data, fds = b"", []
            if not data:
                self.close()
                return
            try:
                message = json.loads(data)
                if not isinstance(message, dict):
                    raise ValueError("not an object")
            except ValueError:
                log.error("dropping a malformed channel message (%d bytes)", len(data))
                _close_fds(fds)
                continue
            re_id = message.get("re")
            waiter = self._waiting.get(re_id) if isinstance(re_id, int) else None
            if waiter is not None:
                if not waiter.done():
                    waiter.set_result((message, fds))
                else:
                    _close_fds(fds)
                continue
            try:
                self._on_message(message, fds)
            except Exception:
                log.exception("channel message %r failed", message.get("op"))

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        if self._loop is not None:
            with contextlib.suppress(ValueError, OSError):
                self._loop.remove_reader(self.sock.fileno())
        self.sock.close()
        for fut in self._waiting.values():
            if not fut.done():
                fut.set_exception(ChannelClosed("the peer went away"))
        self._on_close()


def _close_fds(fds: list[int]) -> None:
    for fd in fds:
        with contextlib.suppress(OSError):
            os.close(fd)
