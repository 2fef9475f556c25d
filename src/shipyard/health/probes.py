"""One probe of one instance: http, tcp or exec, always bounded by the check's timeout.

A `Prober` owns the HTTP client (one per checker/monitor, not per probe) and the environment that exec
probes run in. Probes never raise for an unhealthy instance: every failure becomes a ProbeResult with a
detail a person can act on ("GET http://127.0.0.1:8001/health -> 500 (expected 200): db down").
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import os
import signal
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

import httpx

from shipyard.config.checks import ExecCheck, HealthCheck, HttpCheck, TcpCheck
from shipyard.secrets.scrub import scrubbed

OUTPUT_CAP = 4096          # bytes of exec output kept; the rest is read and dropped
DETAIL_CHARS = 300         # characters of body/output shown in a detail
EXIT_GRACE = 0.5           # after an exec probe exits, how long stragglers may hold its output open
EXIT_POLL = 0.02           # how often a running exec probe's exit status is looked at


@dataclass(frozen=True)
class ProbeResult:
    ok: bool
    detail: str
    latency: float          # seconds the probe took
    # The instance answered and said it is unhealthy (an HTTP status not expected), as opposed to not
    # answering at all. Such a failure counts even inside start_period: the app is up and reports trouble.
    answered: bool = False


def split_address(address: str) -> tuple[str, int]:
    """("host", port) from "host:port" or "[v6]:port"."""
    if "://" in address:
        address = address.split("://", 1)[1].split("/", 1)[0]
    host, sep, port = address.rpartition(":")
    if not sep or not port.isdigit():
        raise ValueError(f"invalid address {address!r}: expected host:port")
    return host.strip("[]") or "127.0.0.1", int(port)


def _snippet(text: str) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= DETAIL_CHARS else flat[: DETAIL_CHARS - 3] + "..."


def _causes(exc: BaseException) -> list[BaseException]:
    chain: list[BaseException] = []
    current: BaseException | None = exc
    while current is not None and current not in chain:
        chain.append(current)
        current = current.__cause__ or current.__context__
    return chain


def _describe(exc: BaseException) -> str:
    """A short reason for a failed connection; httpx hides the OS error a few causes down."""
    chain = _causes(exc)
    if any(isinstance(e, ConnectionRefusedError) or getattr(e, "errno", None) == errno.ECONNREFUSED
           for e in chain):
        return "connection refused"
    os_error = next((e for e in chain if isinstance(e, OSError) and e.strerror), None)
    if os_error is not None:
        return str(os_error.strerror).lower()
    if isinstance(exc, httpx.RemoteProtocolError):
        return f"connection closed: {exc}"
    return str(exc) or type(exc).__name__


class Prober:
    """Runs probes; reuse one per checker or monitor and close it (`async with Prober() as p`)."""

    def __init__(self, *, env: Mapping[str, str] | None = None, cwd: Path | None = None) -> None:
        self.env = dict(env or {})
        self.cwd = cwd
        # Plain http:// probes (nearly all) get a client without a TLS context: building the default one
        # loads the CA bundle (~50 ms), for every checker of every deploy and `status`. An https://
        # address gets its own client, made on first use, that verifies certificates as always.
        self._plain = self._new_client(verify=False)
        self._tls: httpx.AsyncClient | None = None

    @staticmethod
    def _new_client(*, verify: bool) -> httpx.AsyncClient:
        # No keep-alive: each probe opens a new connection, so it also tests that the instance accepts
        # them; no proxies from the environment: instances are reached directly.
        return httpx.AsyncClient(trust_env=False, follow_redirects=False, verify=verify,
                                 limits=httpx.Limits(max_keepalive_connections=0))

    def _client_for(self, url: str) -> httpx.AsyncClient:
        if httpx.URL(url).scheme != "https":
            return self._plain
        if self._tls is None:
            self._tls = self._new_client(verify=True)
        return self._tls

    async def close(self) -> None:
        await self._plain.aclose()
        if self._tls is not None:
            await self._tls.aclose()

    async def __aenter__(self) -> Prober:
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        await self.close()

    async def probe(self, check: HealthCheck, address: str) -> ProbeResult:
        """Probe `address` ("host:port") once with `check`."""
        started = time.monotonic()
        answered = False
        try:
            if isinstance(check, HttpCheck):
                ok, detail, answered = await self._http(check, address)
            elif isinstance(check, TcpCheck):
                ok, detail = await self._tcp(check, address)
            elif isinstance(check, ExecCheck):
                ok, detail = await self._exec(check, address)
            else:                                        # pragma: no cover - the union is closed
                raise TypeError(f"unknown check {check!r}")
        except ValueError as exc:                        # a malformed address is a failed probe, not a crash
            ok, detail = False, str(exc)
        return ProbeResult(ok, detail, time.monotonic() - started, answered=answered and not ok)

    async def _http(self, check: HttpCheck, address: str) -> tuple[bool, str, bool]:
        base = address if address.startswith(("http://", "https://")) else f"http://{address}"
        url = base.rstrip("/") + check.path
        headers = {"Host": check.host} if check.host else {}
        try:
            async with asyncio.timeout(check.timeout):
                client = self._client_for(url)
                async with client.stream("GET", url, headers=headers, timeout=check.timeout) as response:
                    body = b""
                    async for chunk in response.aiter_bytes():
                        body += chunk
                        if len(body) >= 1024:
                            break
        except (TimeoutError, httpx.TimeoutException):
            return False, f"GET {url}: timed out after {check.timeout:g}s", False
        except (httpx.HTTPError, OSError) as exc:
            return False, f"GET {url}: {_describe(exc)}", False
        status = response.status_code
        if status in check.expected_status:
            return True, f"GET {url} -> {status}", True
        expected = "/".join(str(code) for code in check.expected_status)
        text = _snippet(body.decode("utf-8", "replace"))
        return False, f"GET {url} -> {status} (expected {expected})" + (f": {text}" if text else ""), True

    async def _tcp(self, check: TcpCheck, address: str) -> tuple[bool, str]:
        host, port = split_address(address)
        try:
            async with asyncio.timeout(check.timeout):
                _, writer = await asyncio.open_connection(host, port)
                writer.close()
                with contextlib.suppress(OSError):
                    await writer.wait_closed()
        except TimeoutError:
            return False, f"tcp {address}: timed out after {check.timeout:g}s"
        except OSError as exc:
            return False, f"tcp {address}: {_describe(exc)}"
        return True, f"tcp {address}: connected"

    async def _exec(self, check: ExecCheck, address: str) -> tuple[bool, str]:
        host, port = split_address(address)
        env = {**scrubbed(), **self.env, "HEALTH_ADDRESS": address, "HEALTH_HOST": host,
               "HEALTH_PORT": str(port)}
        try:
            proc = await asyncio.create_subprocess_exec(
                "/bin/sh", "-c", check.command, stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
                start_new_session=True, env=env, cwd=self.cwd)
        except OSError as exc:
            return False, f"exec: cannot start /bin/sh: {_describe(exc)}"
        assert proc.stdout is not None
        reader = asyncio.create_task(_read_capped(proc.stdout, OUTPUT_CAP))
        try:
            try:
                async with asyncio.timeout(check.timeout):
                    code = await _exited(proc, reader)
            except TimeoutError:
                return False, f"exec timed out after {check.timeout:g}s (killed)"
            try:
                output = await asyncio.wait_for(asyncio.shield(reader), EXIT_GRACE)
            except TimeoutError:                         # a background child still holds stdout
                _kill_group(proc.pid)
                output = await reader
        finally:
            if proc.returncode is None or not reader.done():
                _kill_group(proc.pid)
            if not reader.done():
                reader.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await reader
            await proc.wait()
        text = _snippet(output.decode("utf-8", "replace"))
        if code == 0:
            return True, "exec: exit 0" + (f": {text}" if text else "")
        return False, f"exec: exit {code}" + (f": {text}" if text else "")


async def _exited(proc: asyncio.subprocess.Process, reader: asyncio.Task[bytes]) -> int:
    """The exit status as soon as the shell exits.

    `proc.wait()` alone also waits for the output pipe to close, which a background child of the probe
    may hold open for as long as it lives; the return code is known earlier, so poll it (cheaply).
    """
    while proc.returncode is None:
        if reader.done():                                # output closed: wait() returns at exit
            return await proc.wait()
        await asyncio.wait({reader}, timeout=EXIT_POLL)
    return proc.returncode


def _kill_group(pgid: int) -> None:
    """SIGKILL the probe's process group (it runs in its own session, so this is only the probe)."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signal.SIGKILL)


async def _read_capped(stream: asyncio.StreamReader, cap: int) -> bytes:
    """Read to EOF, keeping the first `cap` bytes: a chatty probe cannot fill memory or block on a pipe."""
    kept = bytearray()
    while chunk := await stream.read(65536):
        if len(kept) < cap:
            kept += chunk[: cap - len(kept)]
    return bytes(kept)


async def probe(check: HealthCheck, address: str, *, prober: Prober | None = None) -> ProbeResult:
    """Probe once; pass a long-lived `prober` when probing repeatedly."""
    if prober is not None:
        return await prober.probe(check, address)
    async with Prober() as own:
        return await own.probe(check, address)
