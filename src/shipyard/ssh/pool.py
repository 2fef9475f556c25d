"""Connections to the fleet: one multiplexed SSH connection per host, opened on first use, shared by every
command of one shipyard run and closed at its end.

Trust is the project's known_hosts and nothing else: no ~/.ssh/config, no agent, no default keys, no
password or keyboard-interactive prompt. A host whose key is not recorded, or differs from the recorded
one, is refused with the presented key's fingerprint. Failures become SshError subclasses naming the
host; the library's exceptions never leave this module.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import asyncssh

from shipyard.config.durations import format_duration
from shipyard.errors import (
    HostKeyChanged,
    HostKeyUnknown,
    SshAuthFailed,
    SshDisconnected,
    SshError,
    SshRefused,
    SshTimeout,
    SshUnreachable,
    UnknownHostError,
    UsageError,
)
from shipyard.ssh.known_hosts import KnownHosts, fingerprint
from shipyard.ssh.remote import command_line

T = TypeVar("T")
# AES-GCM first: with AES instructions (x86 AES-NI, ARMv8 crypto) it costs both ends less CPU per byte than
# asyncssh's default chacha20-poly1305 (~15% faster shipping a release to 8 hosts at once, bench/ssh_fleet.py).
CIPHERS = ("aes128-gcm@openssh.com", "aes256-gcm@openssh.com", "chacha20-poly1305@openssh.com", "aes128-ctr",
           "aes256-ctr")
SESSIONS_PER_HOST = 8      # below OpenSSH's MaxSessions (10): more concurrent commands wait, never fail
KEEPALIVE_COUNT = 3


@dataclass(frozen=True)
class HostSpec:
    """One entry of `hosts:` as the SSH layer needs it."""

    name: str
    address: str
    user: str
    port: int = 22
    release_dir: str = "/srv/shipyard"
    labels: Mapping[str, str] = field(default_factory=dict)

    @property
    def where(self) -> str:
        return f"{self.name} ({self.user}@{self.address}:{self.port})"


@dataclass(frozen=True)
class SshOptions:
    """`ssh:` resolved: the key's text (from a secret or a file), never shown in a repr."""

    known_hosts: Path
    client_key: str | None = field(default=None, repr=False)
    connect_timeout: float = 5.0
    keepalive: float = 15.0
    parallel: int = 8


@dataclass(frozen=True)
class RunResult:
    """What one remote command did. `exit_status` is negative (-signal) when a signal ended it."""

    host: str
    argv: tuple[str, ...]
    exit_status: int
    stdout: bytes
    stderr: bytes

    @property
    def ok(self) -> bool:
        return self.exit_status == 0

    @property
    def out(self) -> str:
        return self.stdout.decode("utf-8", "replace")

    @property
    def err(self) -> str:
        return self.stderr.decode("utf-8", "replace")


class _Client(asyncssh.SSHClient):
    """Remembers the key the server presented when known_hosts did not trust it (for the error)."""

    def __init__(self) -> None:
        self.presented: asyncssh.SSHKey | None = None

    def validate_host_public_key(self, host: str, addr: str, port: int, key: asyncssh.SSHKey) -> bool:
        self.presented = key
        return False


def load_client_key(text: str | None) -> asyncssh.SSHKey:
    """The private key of `ssh.key`/`ssh.key_file`; a clear UsageError for no key, a passphrase, garbage."""
    if not text or not text.strip():
        raise UsageError("no SSH key: set `ssh.key` (usually \"${secret:DEPLOY_SSH_KEY}\") or `ssh.key_file`")
    try:
        return asyncssh.import_private_key(text.strip() + "\n")
    except asyncssh.KeyImportError as exc:
        if "assphrase" in str(exc):
            raise UsageError("the SSH key is protected by a passphrase; shipyard never prompts: store a key "
                             "without one (in a secret)") from None
        raise UsageError("the SSH key is not a private key shipyard can read (OpenSSH or PEM format)") from None
    except (ValueError, asyncssh.KeyEncryptionError):
        raise UsageError("the SSH key cannot be read (is it protected by a passphrase?)") from None


def _connect_error(host: HostSpec, exc: BaseException, timeout: float) -> SshError:
    """A connect failure as one line naming the host (host-key failures are handled by the caller)."""
    where = host.where
    if isinstance(exc, asyncssh.PermissionDenied):
        return SshAuthFailed(f"{where}: authentication failed: the host refused the configured key "
                             f"for user {host.user}", host.name)
    if isinstance(exc, ConnectionRefusedError):
        return SshRefused(f"{where}: connection refused (is sshd running on port {host.port}?)", host.name)
    if isinstance(exc, TimeoutError):
        return SshTimeout(f"{where}: no SSH connection within {format_duration(timeout)} (connect_timeout)",
                          host.name)
    if isinstance(exc, socket.gaierror):
        return SshUnreachable(f"{where}: cannot resolve {host.address}: {exc.strerror or exc}", host.name)
    if isinstance(exc, asyncssh.DisconnectError):
        return SshDisconnected(f"{where}: the host closed the connection: {exc.reason}", host.name)
    if isinstance(exc, ConnectionResetError | BrokenPipeError):
        return SshDisconnected(f"{where}: the host closed the connection: {exc.strerror or exc}", host.name)
    if isinstance(exc, OSError):
        return SshUnreachable(f"{where}: unreachable: {exc.strerror or exc}", host.name)
    return SshError(f"{where}: {type(exc).__name__}: {exc}", host.name)


async def fetch_host_key(host: HostSpec, timeout: float) -> asyncssh.SSHKey:
    """The key the host presents (no trust, no login): what `shipyard hosts trust` shows and records."""
    try:
        key = await asyncio.wait_for(
            asyncssh.get_server_host_key(host.address, host.port, config=None), timeout)
    except (OSError, asyncssh.Error) as exc:
        raise _connect_error(host, exc, timeout) from None
    if key is None:
        raise SshError(f"{host.where}: the host presented no host key", host.name)
    return key


class SshPool:
    """Lazily opened connections to `hosts`, keyed by host name. Use as `async with SshPool(...) as pool`."""

    def __init__(self, hosts: Mapping[str, HostSpec], options: SshOptions) -> None:
        self.hosts = dict(hosts)
        self.options = options
        self.known_hosts = KnownHosts(options.known_hosts)
        self._conns: dict[str, asyncssh.SSHClientConnection] = {}
        self._locks: dict[str, asyncio.Lock] = {}
        self._sessions: dict[str, asyncio.Semaphore] = {}
        self._slots: asyncio.Semaphore | None = None
        self._key: asyncssh.SSHKey | None = None
        self.connects = 0          # connections opened so far (one per host unless one broke)

    async def __aenter__(self) -> SshPool:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    def host(self, name: str) -> HostSpec:
        try:
            return self.hosts[name]
        except KeyError:
            known = ", ".join(self.hosts) or "none; add them under `hosts:`"
            raise UnknownHostError(f"unknown host {name!r} (known: {known})") from None

    async def connection(self, name: str) -> asyncssh.SSHClientConnection:
        """The open connection to `name`, made on first use (callers asking at once share one connect)."""
        host = self.host(name)
        lock = self._locks.setdefault(name, asyncio.Lock())
        async with lock:
            conn = self._conns.get(name)
            if conn is not None and not conn.is_closed():
                return conn
            conn = await self._connect(host)
            self._conns[name] = conn
            self.connects += 1
            return conn

    async def _connect(self, host: HostSpec) -> asyncssh.SSHClientConnection:
        if self._key is None:
            self._key = load_client_key(self.options.client_key)
        trusted = self.known_hosts.keys_for(host.address, host.port)
        client = _Client()
        timeout = self.options.connect_timeout
        try:
            # The outer wait_for bounds what connect_timeout may not cover (a resolver that hangs).
            conn, _ = await asyncio.wait_for(asyncssh.create_connection(
                lambda: client, host.address, host.port, username=host.user, config=None,
                known_hosts=(trusted, [], []), x509_trusted_certs=None, client_keys=[self._key],
                agent_path=None, agent_forwarding=False, preferred_auth=("publickey",), password=None,
                connect_timeout=timeout, login_timeout=timeout, encryption_algs=CIPHERS,
                keepalive_interval=self.options.keepalive or None, keepalive_count_max=KEEPALIVE_COUNT,
            ), timeout + 1.0)
        except asyncssh.HostKeyNotVerifiable:
            raise self._key_error(host, client.presented, trusted) from None
        except (asyncssh.DisconnectError, ConnectionResetError, BrokenPipeError) as exc:
            # Only the recorded key types were offered: a host whose key changed type hangs up on that
            # (a disconnect or, as the race goes, a reset).
            # Called a changed key only once the key it presents now is seen not to be a trusted one.
            if trusted and not isinstance(exc, asyncssh.PermissionDenied):
                presented = await fetch_host_key(host, timeout)
                if all(presented.public_data != k.public_data for k in trusted):
                    raise self._key_error(host, presented, trusted) from None
            raise _connect_error(host, exc, timeout) from None
        except (OSError, asyncssh.Error) as exc:
            raise _connect_error(host, exc, timeout) from None
        return conn

    @staticmethod
    def _key_error(host: HostSpec, presented: asyncssh.SSHKey | None,
                   trusted: Sequence[asyncssh.SSHKey]) -> SshError:
        shown = fingerprint(presented) if presented is not None else "(none)"
        kind = presented.get_algorithm() if presented is not None else "?"
        if not trusted:
            return HostKeyUnknown(
                f"{host.where}: unknown host key {shown} ({kind}); if that is the host's key, run "
                f"`shipyard hosts trust {host.name} --fingerprint {shown}`", host.name, shown)
        known = ", ".join(fingerprint(k) for k in trusted)
        return HostKeyChanged(
            f"{host.where}: HOST KEY CHANGED: it presents {shown} ({kind}), known_hosts has {known}; if the "
            f"host was reinstalled, check the new key and run `shipyard hosts trust {host.name} --replace`",
            host.name, shown)

    async def run(self, name: str, argv: Sequence[str], *, stdin: str | bytes | None = None,
                  offer: bytes | None = None, timeout: float, env: Mapping[str, str] | None = None) -> RunResult:
        """Run `argv` on host `name` (quoted by shipyard.ssh.remote) and wait at most `timeout` seconds.

        `offer` is data sent only if the command asks for it by first printing the line `send` (that line
        is not part of its stdout): "have you got this? then here it is" in one session, not two.
        """
        line = command_line(argv, env)
        conn = await self.connection(name)
        data = stdin.encode() if isinstance(stdin, str) else stdin
        sessions = self._sessions.setdefault(name, asyncio.Semaphore(SESSIONS_PER_HOST))
        host = self.hosts[name]
        async with sessions:
            try:
                if offer is None:
                    proc = await conn.run(line, input=data, timeout=timeout, check=False, encoding=None,
                                          stdin=asyncssh.DEVNULL if data is None else asyncssh.PIPE)
                    status, out, err = proc.returncode, _bytes(proc.stdout), _bytes(proc.stderr)
                else:
                    status, out, err = await asyncio.wait_for(_offered(conn, line, offer), timeout)
            except (asyncssh.TimeoutError, TimeoutError):
                raise SshTimeout(f"{host.where}: {argv[0]} did not finish within {format_duration(timeout)}",
                                 name) from None
            except asyncssh.ChannelOpenError as exc:
                raise SshDisconnected(f"{host.where}: cannot start {argv[0]}: {exc.reason}", name) from None
            except (OSError, asyncssh.Error) as exc:
                self._conns.pop(name, None)
                raise SshDisconnected(f"{host.where}: connection lost while running {argv[0]}: "
                                      f"{getattr(exc, 'reason', None) or exc or type(exc).__name__}", name) from None
        if status is None:
            self._conns.pop(name, None)
            raise SshDisconnected(f"{host.where}: connection lost before {argv[0]} exited", name)
        return RunResult(name, tuple(argv), status, out, err)

    async def each(self, names: Iterable[str], work: Callable[[str], Awaitable[T]]) -> dict[str, T | SshError]:
        """`work(name)` for every host, at most `ssh.parallel` at once across the whole pool; a host's
        SshError is its result (the others go on). Not re-entrant: `work` must not call `each`."""
        if self._slots is None:
            self._slots = asyncio.Semaphore(self.options.parallel)
        slots = self._slots
        wanted = [self.host(n).name for n in dict.fromkeys(names)]

        async def one(name: str) -> tuple[str, T | SshError]:
            async with slots:
                try:
                    return name, await work(name)
                except SshError as exc:
                    return name, exc

        return dict(await asyncio.gather(*(one(n) for n in wanted)))

    def drop(self, name: str) -> None:
        """Forget the connection to `name` (it broke, or its link went away): the next use connects again."""
        conn = self._conns.pop(name, None)
        if conn is not None:
            conn.abort()

    async def close(self) -> None:
        conns, self._conns = list(self._conns.values()), {}
        for conn in conns:
            conn.close()
        for conn in conns:
            with contextlib.suppress(TimeoutError, OSError, asyncssh.Error):
                await asyncio.wait_for(conn.wait_closed(), 5.0)


async def _offered(conn: asyncssh.SSHClientConnection, line: str, offer: bytes) -> tuple[int | None, bytes, bytes]:
    """One session of `run(offer=)`: the data goes only after the command's first line says `send`."""
    proc = await conn.create_process(line, encoding=None)
    try:
        first = await proc.stdout.readline()
        asked = first == b"send\n"
        if not asked:
            proc.stdin.write_eof()
        out, err = await proc.communicate(offer if asked else None)
        return proc.returncode, (b"" if asked else _bytes(first)) + _bytes(out), _bytes(err)
    finally:
        proc.close()


def _bytes(data: Any) -> bytes:
    if data is None:
        return b""
    return data if isinstance(data, bytes) else str(data).encode()
