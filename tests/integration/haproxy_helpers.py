"""The HAProxy router tests' HAProxy: shipyard.testing.haproxy's real process, and a channel that keeps
every line it sent. Under CI=true a missing haproxy binary fails, never skips."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

try:  # works whether or not tests/ is a package
    from .proxy_compare import haproxy_binary
except ImportError:
    from proxy_compare import haproxy_binary

from shipyard.routers.haproxy import UnixSocketChannel
from shipyard.testing.haproxy import Haproxy as Process
from shipyard.testing.haproxy import haproxy_process


@dataclass
class Haproxy:
    process: Process
    sent: list[str] = field(default_factory=list)

    @property
    def socket(self) -> str:
        return self.process.socket

    @property
    def operator_socket(self) -> str:
        return self.process.operator_socket

    @property
    def listen(self) -> str:
        return self.process.listen

    @property
    def url(self) -> str:
        return self.process.url

    def channel(self) -> RecordingChannel:
        return RecordingChannel(self.socket, self.sent)


class RecordingChannel(UnixSocketChannel):
    """The real unix-socket channel, keeping every line it sent (what a test asserts was never sent)."""

    def __init__(self, path: str, sent: list[str]) -> None:
        super().__init__(path)
        self.sent = sent

    async def send(self, line: str) -> str:
        self.sent.append(line)
        return await super().send(line)


@contextlib.asynccontextmanager
async def running_haproxy(slots: int = 4) -> AsyncIterator[Haproxy]:
    with haproxy_process(haproxy_binary(), slots=slots) as process:
        yield Haproxy(process)
