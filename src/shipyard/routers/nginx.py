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

import asyncssh

from shipyard.commands.nginx import (
    Server,
    config_test_argv,
    error_line,
    old_workers,
    parse_response,
    parse_servers,
    parse_status,
    ps_argv,
    reload_argv,
    render,
    status_request,
    still_accepting,
    workers,
)
from shipyard.errors import RouterError, ShipyardError
from shipyard.routers.base import WeightedBackend

POLL = 0.02       # between reads of the status server and ps while a reload takes effect


Stream = tuple[Any, Any]     # (reader, writer): asyncio's streams, or asyncssh's for a channel


class Executor(Protocol):
    where: str

    async def run(self, argv: list[str], *, stdin: bytes | None = None, timeout: float) -> tuple[int, str, str]:
        """Run argv; (exit status, stdout, stderr). RouterError when it cannot be run at all."""
        ...

    async def connect(self, host: str, port: int, *, timeout: float) -> Stream | None:
        """A TCP stream to host:port as seen from where nginx runs (None: refused there). RouterError when
        the machine itself cannot be reached within `timeout`."""
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

    async def connect(self, host: str, port: int, *, timeout: float) -> Stream | None:
        try:
            async with asyncio.timeout(timeout):
                return await asyncio.open_connection(host, port)
        except (OSError, TimeoutError):
            return None


class SshExecutor:
    """The router's host over the invocation's SSH pool: commands as argv (quoted by shipyard.ssh.remote),
    the status server through a direct-tcpip channel of the same connection (nothing to install there,
    no port opened beyond its loopback). Each call is bounded by its timeout, connecting included, so a host
    whose network is cut fails within the router's timeout."""

    def __init__(self, pool: Any, host: str) -> None:
        self.pool, self.host, self.where = pool, host, f"host {host}"

    async def run(self, argv: list[str], *, stdin: bytes | None = None, timeout: float) -> tuple[int, str, str]:
        try:
            async with asyncio.timeout(timeout):
                res = await self.pool.run(self.host, argv, stdin=stdin, timeout=timeout)
        except TimeoutError:
            raise RouterError(f"nginx on {self.host}: {argv[0]} got no answer within {timeout:g}s "
                              f"(host unreachable?)") from None
        except ShipyardError as exc:
            raise RouterError(f"nginx on {self.host}: {exc}") from exc
        return res.exit_status, res.out, res.err

    async def connect(self, host: str, port: int, *, timeout: float) -> Stream | None:
        try:
            async with asyncio.timeout(timeout):
                conn = await self.pool.connection(self.host)
                return await conn.open_connection(host, port)
        except TimeoutError:
            raise RouterError(f"nginx on {self.host}: no answer within {timeout:g}s (host unreachable?)") from None
        except ShipyardError as exc:
            raise RouterError(f"nginx on {self.host}: {exc}") from exc
        except asyncssh.ChannelOpenError:
            return None                                   # refused on the host: nothing listens there
        except (OSError, asyncssh.Error) as exc:
            raise RouterError(f"nginx on {self.host}: connection lost: "
                              f"{getattr(exc, 'reason', None) or exc or type(exc).__name__}") from None


# $1 file; the new text on stdin. Keeps the previous file as $1.prev (put back when `nginx -t` fails).
_WRITE = 'set -e; f=$1; [ -f "$f" ] && cp -p "$f" "$f.prev" || : > "$f.prev"; cat > "$f.new"; mv "$f.new" "$f"'
_RESTORE = 'f=$1; if [ -s "$f.prev" ]; then mv "$f.prev" "$f"; else rm -f "$f"; fi'


class NginxRouter:
    def __init__(self, ex: Executor, *, upstream: str, file: str, conf: str, status: str, binary: str = "nginx",
                 listen: str | None = None, timeout: float = 10.0) -> None:
        self.ex, self.upstream, self.file, self.conf = ex, upstream, file, conf
        self.status, self.binary, self.listen, self.timeout = status, binary, listen, timeout
        self._before_reload: set[int] = set()

    @property
    def name(self) -> str:
        return f"nginx upstream {self.upstream} on {self.ex.where}"

    async def ensure(self) -> str | None:
        await self._alive()
        return self.listen

    async def _alive(self) -> tuple[str, int | None]:
        """(generation, worker pid) nginx serves; RouterError when its status server does not answer."""
        live = await self._status()
        if live is None:
            raise RouterError(f"{self.name}: nginx does not answer on its status server {self.status} (is it "
                              f"running, and does {self.conf} include {self.file}?)")
        return live

    async def _run(self, argv: list[str], stdin: bytes | None = None) -> tuple[int, str, str]:
        return await self.ex.run(argv, stdin=stdin, timeout=self.timeout)

    async def _status(self) -> tuple[str, int | None] | None:
        """What one of nginx's workers answers on the status server (a new connection each time: after a
        reload only new workers accept). None: nothing answers there, or not a generation."""
        host, _, port = self.status.rpartition(":")
        stream = await self.ex.connect(host.strip("[]"), int(port), timeout=self.timeout)
        if stream is None:
            return None
        reader, writer = stream
        try:
            async with asyncio.timeout(min(2.0, self.timeout)):
                writer.write(status_request(self.status))
                raw = await reader.read(4096)
                while raw and (more := await reader.read(4096)):
                    raw += more
        except (TimeoutError, OSError, asyncssh.Error):
            return None
        finally:
            writer.close()
        body = parse_response(raw if isinstance(raw, bytes) else str(raw).encode())
        return None if body is None else parse_status(body)

    async def _generation(self) -> str | None:
        live = await self._status()
        return None if live is None else live[0]

    async def set_backends(self, backends: list[WeightedBackend]) -> None:
        servers = [Server(b.address, b.weight, b.revision, b.instance) for b in backends]
        try:
            text, gen = render(self.upstream, servers, self.status)
        except ValueError as exc:
            raise RouterError(f"{self.name}: {exc}") from None
        if await self._generation() == gen and (await self._run(["cat", self.file]))[1] == text:
            # Already served and already the file: nothing to reload. This is what lets a rollback go on
            # after nginx refused the change (the previous file was put back, still serving): its "route
            # to the old instances" must not depend on the `nginx -t` that just failed.
            return
        code, _, err = await self._run(["sh", "-c", _WRITE, "sh", self.file], stdin=text.encode())
        if code != 0:
            raise RouterError(f"{self.name}: cannot write {self.file}: {error_line(err, code)}")
        code, out, err = await self._run(config_test_argv(self.binary, self.conf))
        if code != 0:
            await self._run(["sh", "-c", _RESTORE, "sh", self.file])
            raise RouterError(f"{self.name}: nginx -t refused the configuration (previous upstream kept): "
                              f"{error_line(err or out, code)}")
        # Every worker running now is old once the reload is sent: drain waits for these too, even one
        # that has not been told to shut down yet (a first deploy, with nothing answering, has none).
        with contextlib.suppress(RouterError):
            self._before_reload = set(await self._workers())
        code, out, err = await self._run(reload_argv(self.binary, self.conf))
        if code != 0:
            await self._run(["sh", "-c", _RESTORE, "sh", self.file])
            raise RouterError(f"{self.name}: nginx -s reload failed: {error_line(err or out, code)}")
        deadline = time.monotonic() + self.timeout
        while (now := await self._generation()) != gen:
            if time.monotonic() > deadline:
                raise RouterError(f"{self.name}: reloaded, but its workers still answer generation {now or '-'} "
                                  f"after {self.timeout:g}s, not {gen}")
            await asyncio.sleep(POLL)
        # The new workers answer, but an old one still accepts until it has been told to shut down (then
        # it closes its listening sockets in the same step it renames itself "shutting down"): until
        # then a new request may still get the old upstream.
        while left := still_accepting(await self._workers(), self._before_reload):
            if time.monotonic() > deadline:
                raise RouterError(f"{self.name}: reloaded, but {left} old worker(s) still accept requests "
                                  f"after {self.timeout:g}s")
            await asyncio.sleep(POLL)

    async def backends(self) -> list[WeightedBackend]:
        await self._alive()
        code, out, _ = await self._run(["cat", self.file])
        if code != 0:
            return []
        return [WeightedBackend(s.address, s.weight, s.revision, s.instance) for s in parse_servers(out)]

    async def drain(self, address: str, timeout: float, ws_timeout: float | None = None) -> int:
        """Old workers (the ones holding requests sent before the reload) finish them and exit: wait until
        none of this nginx's workers is shutting down; how many still are at the deadline. nginx cannot
        tell which backend a worker's requests go to, so this waits for all of the previous generation."""
        deadline = time.monotonic() + max(timeout, ws_timeout or 0.0)
        while True:
            left = await self._shutting_down()
            if left == 0 or time.monotonic() >= deadline:
                return left
            await asyncio.sleep(0.1)

    async def _workers(self) -> dict[int, bool]:
        """This nginx's workers ({pid: shutting down}), found through the worker that answers."""
        for _ in range(3):    # the worker that answered may be an old one that exits before ps runs
            _, worker = await self._alive()
            if worker is None:
                raise RouterError(f"{self.name}: the status server does not name its worker (a file from an "
                                  f"older shipyard? the next traffic change rewrites it)")
            code, out, err = await self._run(ps_argv())
            if code != 0:
                raise RouterError(f"{self.name}: ps failed: {error_line(err, code)}")
            master, kids = workers(out, worker)
            if master is not None:
                return kids
        raise RouterError(f"{self.name}: nginx's workers keep changing (reloaded by someone else?)")

    async def _shutting_down(self) -> int:
        return old_workers(await self._workers(), self._before_reload)

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
        gen, worker = await self._alive()
        return {"backends": [b.__dict__ for b in await self.backends()], "generation": gen, "worker_pid": worker,
                "old_workers": await self._shutting_down(), "listen": self.listen,
                "file": str(PurePosixPath(self.file))}

