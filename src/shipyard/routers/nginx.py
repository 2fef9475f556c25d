"""nginx as the router: shipyard renders the service's upstream into a file it owns, checks the whole
configuration with `nginx -t`, reloads gracefully, and waits until nginx's new workers answer the new
generation on the status server rendered beside the upstream; only then has traffic moved.

A failed check puts the previous file back, so nginx keeps serving what it served and the deploy stops
before traffic moves, with nginx's own error line. Draining is nginx's graceful reload: the old workers
finish their requests and exit; `drain` waits for them (ps shows them as "worker process is shutting
down") and returns how many are left at its timeout.

Commands run through an Executor: on this machine, or on the router's host over SSH (argv only).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from pathlib import PurePosixPath
from typing import Any, Protocol

import httpx

from shipyard.commands.nginx import (
    SHUTTING_DOWN,
    STATUS_PATH,
    Server,
    parse_servers,
    reload_argv,
    render,
    test_argv,
)
from shipyard.errors import RouterError, ShipyardError
from shipyard.routers.base import WeightedBackend

POLL = 0.05


class Executor(Protocol):
    where: str

    async def run(self, argv: list[str], *, stdin: bytes | None = None, timeout: float) -> tuple[int, str, str]:
        """Run argv; (exit status, stdout, stderr). RouterError when it cannot be run at all."""
        ...


class LocalExecutor:
    where = "this machine"

    async def run(self, argv: list[str], *, stdin: bytes | None = None, timeout: float) -> tuple[int, str, str]:
        try:
            proc = await asyncio.create_subprocess_exec(
                *argv, stdin=asyncio.subprocess.PIPE if stdin is not None else asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
        except OSError as exc:
            raise RouterError(f"cannot run {argv[0]}: {exc.strerror or exc}") from exc
        try:
            out, err = await asyncio.wait_for(proc.communicate(stdin), timeout)
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            await proc.wait()
            raise RouterError(f"{argv[0]} {argv[1] if len(argv) > 1 else ''} did not finish within {timeout:g}s") \
                from None
        return proc.returncode or 0, out.decode("utf-8", "replace"), err.decode("utf-8", "replace")


class SshExecutor:
    """The router's host over the invocation's SSH pool."""

    def __init__(self, pool: Any, host: str) -> None:
        self.pool, self.host, self.where = pool, host, f"host {host}"

    async def run(self, argv: list[str], *, stdin: bytes | None = None, timeout: float) -> tuple[int, str, str]:
        try:
            res = await self.pool.run(self.host, argv, stdin=stdin, timeout=timeout)
        except ShipyardError as exc:
            raise RouterError(f"nginx on {self.host}: {exc}") from exc
        return res.exit_status, res.out, res.err


# $1 file; the new text on stdin. Keeps the previous file as $1.prev (put back when `nginx -t` fails).
_WRITE = 'set -e; f=$1; [ -f "$f" ] && cp -p "$f" "$f.prev" || : > "$f.prev"; cat > "$f.new"; mv "$f.new" "$f"'
_RESTORE = 'f=$1; if [ -s "$f.prev" ]; then mv "$f.prev" "$f"; else rm -f "$f"; fi'
_WORKERS = "ps -eo args="


class NginxRouter:
    def __init__(self, ex: Executor, *, upstream: str, file: str, conf: str, status: str, binary: str = "nginx",
                 listen: str | None = None, timeout: float = 10.0) -> None:
        self.ex, self.upstream, self.file, self.conf = ex, upstream, file, conf
        self.status, self.binary, self.listen, self.timeout = status, binary, listen, timeout

    @property
    def name(self) -> str:
        return f"nginx upstream {self.upstream} on {self.ex.where}"

    async def ensure(self) -> str | None:
        await self._alive()
        return self.listen

    async def _alive(self) -> str:
        """The generation nginx serves; RouterError when its status server does not answer."""
        gen = await self._generation()
        if gen is None:
            raise RouterError(f"{self.name}: nginx does not answer on its status server {self.status} (is it "
                              f"running, and does {self.conf} include {self.file}?)")
        return gen

    async def _run(self, argv: list[str], stdin: bytes | None = None) -> tuple[int, str, str]:
        return await self.ex.run(argv, stdin=stdin, timeout=self.timeout)

    async def _generation(self) -> str | None:
        """What nginx's workers answer on the status server (None: nothing answers)."""
        host, _, port = self.status.rpartition(":")
        if isinstance(self.ex, LocalExecutor):
            try:
                async with httpx.AsyncClient(timeout=2.0) as http:
                    resp = await http.get(f"http://{host}:{port}{STATUS_PATH}")
            except httpx.HTTPError:
                return None
            return resp.text.strip() if resp.status_code == 200 else None
        code, out, _ = await self._fetch_remote(host, port)     # the status server listens on that host
        return out if code == 0 and out else None

    async def _fetch_remote(self, host: str, port: str) -> tuple[int, str, str]:
        script = ("import sys, urllib.request\n"
                  "try:\n print(urllib.request.urlopen(sys.argv[1], timeout=2).read().decode().strip())\n"
                  "except Exception:\n sys.exit(1)\n")
        code, out, err = await self._run(["python3", "-c", script, f"http://{host}:{port}{STATUS_PATH}"])
        return code, out.strip(), err

    async def set_backends(self, backends: list[WeightedBackend]) -> None:
        servers = [Server(b.address, b.weight, b.revision, b.instance) for b in backends]
        try:
            text, gen = render(self.upstream, servers, self.status)
        except ValueError as exc:
            raise RouterError(f"{self.name}: {exc}") from None
        code, _, err = await self._run(["sh", "-c", _WRITE, "sh", self.file], stdin=text.encode())
        if code != 0:
            raise RouterError(f"{self.name}: cannot write {self.file}: {_last(err, code)}")
        code, out, err = await self._run(test_argv(self.binary, self.conf))
        if code != 0:
            await self._run(["sh", "-c", _RESTORE, "sh", self.file])
            raise RouterError(f"{self.name}: nginx -t refused the configuration (previous upstream kept): "
                              f"{_last(err or out, code)}")
        code, out, err = await self._run(reload_argv(self.binary, self.conf))
        if code != 0:
            await self._run(["sh", "-c", _RESTORE, "sh", self.file])
            raise RouterError(f"{self.name}: nginx -s reload failed: {_last(err or out, code)}")
        deadline = time.monotonic() + self.timeout
        while (now := await self._generation()) != gen:
            if time.monotonic() > deadline:
                raise RouterError(f"{self.name}: reloaded, but its workers still answer generation {now or '-'} "
                                  f"after {self.timeout:g}s, not {gen}")
            await asyncio.sleep(POLL)

    async def backends(self) -> list[WeightedBackend]:
        await self._alive()
        code, out, _ = await self._run(["cat", self.file])
        if code != 0:
            return []
        return [WeightedBackend(s.address, s.weight, s.revision, s.instance) for s in parse_servers(out)]

    async def drain(self, address: str, timeout: float, ws_timeout: float | None = None) -> int:
        """Old workers (the ones serving requests sent before the reload) finish them and exit."""
        await self._alive()
        deadline = time.monotonic() + max(timeout, ws_timeout or 0.0)
        while True:
            left = await self._shutting_down()
            if left == 0 or time.monotonic() >= deadline:
                return left
            await asyncio.sleep(0.1)

    async def _shutting_down(self) -> int:
        code, out, _ = await self._run(["sh", "-c", _WORKERS])
        return sum(1 for line in out.splitlines() if SHUTTING_DOWN in line) if code == 0 else 0

    async def verify(self, backends: list[WeightedBackend]) -> bool | None:
        """True when nginx's workers answer the generation of exactly these weights."""
        try:
            _, gen = render(self.upstream, [Server(b.address, b.weight, b.revision, b.instance) for b in backends],
                            self.status)
        except ValueError:
            return False
        live = await self._generation()
        return None if live is None else live == gen

    async def stats(self) -> dict[str, Any]:
        return {"backends": [b.__dict__ for b in await self.backends()], "generation": await self._alive(),
                "listen": self.listen, "file": str(PurePosixPath(self.file))}


def _last(text: str, code: int) -> str:
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    return lines[-1] if lines else f"exit {code}"
