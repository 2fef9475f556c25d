"""A real HAProxy on loopback for the HAProxy router tests: a temp config with a backend of server slots,
a stats socket at `level admin` (and one at `level operator`), started in the foreground and stopped
(SIGTERM, then SIGKILL) by the fixture. Under CI=true a missing haproxy binary fails, never skips."""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import subprocess
import tempfile
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

try:  # works whether or not tests/ is a package
    from .proxy_compare import free_port, haproxy_binary
except ImportError:
    from proxy_compare import free_port, haproxy_binary

from shipyard.routers.haproxy import UnixSocketChannel

HAPROXY_SLOTS_CFG = """
global
    stats socket {admin} mode 600 level admin
    stats socket {operator} mode 600 level operator
    maxconn 500
defaults
    mode http
    option http-keep-alive
    timeout connect 2s
    timeout client 30s
    timeout server 30s
frontend web
    bind 127.0.0.1:{port}
    default_backend app
backend app
    balance roundrobin
    server-template app 1-{slots} 0.0.0.0:0 disabled check inter 1s
"""


@dataclass
class Haproxy:
    proc: subprocess.Popen[bytes]
    socket: str
    operator_socket: str
    listen: str
    log: Path
    sent: list[str] = field(default_factory=list)

    def channel(self) -> RecordingChannel:
        return RecordingChannel(self.socket, self.sent)

    @property
    def url(self) -> str:
        return f"http://{self.listen}"


class RecordingChannel(UnixSocketChannel):
    """The real unix-socket channel, keeping every line it sent (what a test asserts was never sent)."""

    def __init__(self, path: str, sent: list[str]) -> None:
        super().__init__(path)
        self.sent = sent

    async def send(self, line: str) -> str:
        self.sent.append(line)
        return await super().send(line)


async def _wait_socket(path: str, proc: subprocess.Popen[bytes], log: Path, timeout: float = 15.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        if proc.poll() is not None:
            raise AssertionError(f"haproxy exited ({proc.returncode}): {log.read_text()[-2000:]}")
        with contextlib.suppress(OSError):
            _, writer = await asyncio.open_unix_connection(path)
            writer.close()
            return
        if loop.time() > deadline:
            raise AssertionError(f"haproxy's stats socket {path} did not open within {timeout:g}s")
        await asyncio.sleep(0.02)


@contextlib.asynccontextmanager
async def running_haproxy(slots: int = 4) -> AsyncIterator[Haproxy]:
    binary = haproxy_binary()
    # Unix socket paths are limited to ~107 bytes: pytest's tmp_path can be longer, so a short dir in /tmp.
    tmp = Path(tempfile.mkdtemp(prefix="shy-hx-", dir="/tmp"))
    admin, operator, port = str(tmp / "admin.sock"), str(tmp / "operator.sock"), free_port()
    cfg = tmp / "haproxy.cfg"
    cfg.write_text(HAPROXY_SLOTS_CFG.format(admin=admin, operator=operator, port=port, slots=slots))
    log = tmp / "haproxy.log"
    with log.open("wb") as out:
        proc = subprocess.Popen([binary, "-db", "-f", str(cfg)], stdout=out, stderr=subprocess.STDOUT)
    try:
        await _wait_socket(admin, proc, log)
        yield Haproxy(proc, admin, operator, f"127.0.0.1:{port}", log)
    finally:
        proc.terminate()
        try:
            await asyncio.to_thread(proc.wait, 10)
        except subprocess.TimeoutExpired:
            proc.kill()
            await asyncio.to_thread(proc.wait)
        shutil.rmtree(tmp, ignore_errors=True)
