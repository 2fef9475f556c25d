"""A Router driven through HAProxy's runtime API: no reload, no config file written, per deploy.

HAProxy is configured once by the user with a backend of server slots (`server-template app 1-16
0.0.0.0:0 disabled check`, docs/haproxy.md). A traffic change points slots at instances (`set server
B/S addr A port P`), sets their weights and states, then reads `show servers state` back to confirm.

The channel is one small interface (send one line, get its answer) so the socket can be local (here) or
on another host behind SSH. The local one opens a connection per command: HAProxy's non-interactive
mode answers one command and closes, so the end of an answer is the end of the stream — no prompt to
parse, no state to lose when a connection breaks, and a command never waits behind another's answer. A
connect on a unix socket costs tens of microseconds, far below the 50 ms a traffic change may take.
"""

from __future__ import annotations

import asyncio
import re
from collections import Counter
from dataclasses import dataclass
from typing import Any, Protocol

from shipyard.commands import haproxy as cmd
from shipyard.errors import RouterError, ShipyardError
from shipyard.routers.base import WeightedBackend

# srv_admin_state bits (HAProxy's enum srv_admin): forced/inherited/resolver maintenance, and drain.
ADMIN_MAINT = 0x01 | 0x02 | 0x20
ADMIN_DRAIN = 0x08 | 0x10
CHECK_CONFIGURED = 0x02       # srv_check_state: the server has a health check
OP_RUNNING = 2                # srv_op_state
POLL_INTERVAL = 0.05          # drain polls `show stat` this often


class HaproxyError(RouterError):
    """HAProxy is unreachable, refused a runtime API command, or does not serve what was set."""


class RuntimeChannel(Protocol):
    """One runtime API command in, its whole answer out (a local socket, or one reached over SSH)."""

    async def send(self, line: str) -> str:
        ...


class _StreamChannel:
    """Sends one command over a fresh stream and reads the answer to EOF; subclasses say how the stream
    is opened and what a failure to reach the socket means."""

    timeout: float
    # End the stream's input after the command. The local socket does not: HAProxy closes after one
    # answer anyway, and a peer that waits for EOF before answering stays a timeout, not an empty answer.
    half_close = False

    def _where(self) -> str:
        raise NotImplementedError

    async def _open(self) -> tuple[Any, Any]:
        """A (reader, writer) pair connected to the stats socket."""
        raise NotImplementedError

    def _unreachable(self, exc: Exception) -> HaproxyError | None:
        """The one-line error for a failure to reach the socket, or None for an error that is not one."""
        raise NotImplementedError

    async def send(self, line: str) -> str:
        if "\n" in line or "\r" in line:
            raise cmd.HaproxyCommandError("a runtime API command is one line")
        try:
            async with asyncio.timeout(self.timeout):
                reader, writer = await self._open()
                try:
                    writer.write(line.encode() + b"\n")
                    await writer.drain()
                    if self.half_close:
                        writer.write_eof()
                    data = await reader.read()          # to EOF: HAProxy closes after the answer
                finally:
                    writer.close()
        except TimeoutError:
            raise HaproxyError(f"HAProxy's runtime API at {self._where()} did not answer within "
                               f"{self.timeout:g}s") from None
        except Exception as exc:
            error = self._unreachable(exc)
            if error is None:
                raise
            raise error from None
        return data.decode(errors="replace") if isinstance(data, bytes) else str(data)


class UnixSocketChannel(_StreamChannel):
    """HAProxy's stats socket on this host, one connection per command (see the module docstring)."""

    def __init__(self, path: str, timeout: float = 5.0) -> None:
        self.path, self.timeout = path, timeout

    def _where(self) -> str:
        return self.path

    async def _open(self) -> tuple[Any, Any]:
        return await asyncio.open_unix_connection(self.path)

    def _unreachable(self, exc: Exception) -> HaproxyError | None:
        if not isinstance(exc, OSError):
            return None
        return HaproxyError(f"cannot reach HAProxy's runtime API at {self.path}: {exc.strerror or exc}")


class SshUnixChannel(_StreamChannel):
    """HAProxy's stats socket on another host, through a streamlocal channel of the pool's SSH connection to
    it (no socat on the host, no port opened for the runtime API)."""

    half_close = True       # the channel's EOF, as socat sends it: sshd then shuts the socket's write side

    def __init__(self, pool: Any, host: str, path: str, timeout: float = 5.0) -> None:
        self.pool, self.host, self.path, self.timeout = pool, host, path, timeout

    def _where(self) -> str:
        return f"{self.host}:{self.path}"

    async def _open(self) -> tuple[Any, Any]:
        conn = await self.pool.connection(self.host)
        return await conn.open_unix_connection(self.path)

    def _unreachable(self, exc: Exception) -> HaproxyError | None:
        if isinstance(exc, ShipyardError):      # the pool's: the host itself is unreachable
            return HaproxyError(f"cannot reach HAProxy on {self.host}: {exc}")
        # asyncssh's channel errors: the socket is not there, or refused
        return HaproxyError(f"cannot reach HAProxy's runtime API at {self._where()}: "
                            f"{getattr(exc, 'reason', None) or exc or type(exc).__name__}")


@dataclass(frozen=True)
class Slot:
    """One server of the backend, as `show servers state` shows it."""

    name: str
    ip: str
    port: int
    admin: int
    op: int
    weight: int
    checked: bool

    @property
    def address(self) -> str:
        return f"[{self.ip}]:{self.port}" if ":" in self.ip else f"{self.ip}:{self.port}"

    @property
    def in_maint(self) -> bool:
        return bool(self.admin & ADMIN_MAINT)

    @property
    def draining(self) -> bool:
        return not self.in_maint and bool(self.admin & ADMIN_DRAIN)

    @property
    def serving(self) -> bool:
        """In the set: ready (neither maintenance nor drain), whatever its weight."""
        return not (self.admin & (ADMIN_MAINT | ADMIN_DRAIN))


def haproxy_weights(weights: list[int]) -> list[int]:
    """shipyard's integer weights as HAProxy's 0-256: kept when they fit, else scaled so the largest is
    256 (rounded; a non-zero weight never becomes 0, so a backend meant to get traffic gets some)."""
    top = max(weights, default=0)
    if top <= cmd.MAX_WEIGHT:
        return list(weights)
    return [0 if w == 0 else max(1, round(w * cmd.MAX_WEIGHT / top)) for w in weights]


def default_prefix(names: list[str]) -> str:
    """The server-template prefix of a backend: the most common name with its trailing digits cut."""
    stems = Counter(re.sub(r"\d+$", "", n) for n in names if re.search(r"\d$", n))
    return stems.most_common(1)[0][0] if stems else ""


def plan(backend: str, slots: list[Slot], wanted: list[tuple[str, int, int]]) -> list[str]:
    """The runtime API lines that make `slots` serve `wanted` [(ip, port, haproxy weight)].

    Stable: a slot already holding an address keeps it; new addresses take slots in maintenance first,
    then slots still draining from an earlier change. New capacity is set up before old is taken out,
    and slots leaving the set go to weight 0 and `drain` (drain() puts them in `maint` once empty).
    Raises HaproxyError, before any line is sent, when there are not enough slots.
    """
    by_address: dict[str, Slot] = {}
    for slot in sorted(slots, key=lambda s: (not s.serving, s.in_maint)):
        if not slot.in_maint:
            by_address.setdefault(slot.address, slot)
    keys = {f"[{ip}]:{port}" if ":" in ip else f"{ip}:{port}" for ip, port, _ in wanted}
    taken = {by_address[k].name for k in keys if k in by_address}
    spare = [s for s in slots if s.in_maint and s.name not in taken]
    spare += [s for s in slots if s.draining and s.name not in taken and s.address not in keys]
    missing = [w for w in wanted if (f"[{w[0]}]:{w[1]}" if ":" in w[0] else f"{w[0]}:{w[1]}") not in by_address]
    if len(missing) > len(spare):
        raise HaproxyError(f"HAProxy backend {backend!r} has {len(slots)} server slots, {len(spare)} free: "
                           f"{len(missing)} more are needed (add slots to its server-template)")
    lines: list[str] = []
    for ip, port, weight in wanted:
        key = f"[{ip}]:{port}" if ":" in ip else f"{ip}:{port}"
        held = by_address.get(key)
        if held is None:        # a slot in maintenance that last held this address first, then any
            held = next((s for s in spare if s.address == key), spare[0])
            spare.remove(held)
        slot = held
        if key != slot.address:
            lines.append(cmd.set_addr(backend, slot.name, ip, port))
        if weight != slot.weight or key != slot.address:
            lines.append(cmd.set_weight(backend, slot.name, weight))
        if not slot.serving or key != slot.address:
            lines.append(cmd.set_state(backend, slot.name, "ready"))
            if slot.checked:    # shipyard checked the instance already: no wait for `rise` checks
                lines.append(cmd.set_health(backend, slot.name, "up"))
    for slot in slots:
        if slot.serving and slot.address not in keys:
            lines += [cmd.set_weight(backend, slot.name, 0), cmd.set_state(backend, slot.name, "drain")]
    return lines


class HaproxyRouter:
    def __init__(self, channel: RuntimeChannel, backend: str, *, server_prefix: str | None = None,
                 listen: str | None = None, where: str = "HAProxy") -> None:
        self.channel, self.backend = channel, cmd.check_name(backend, "backend")
        self.prefix = cmd.check_name(server_prefix, "server prefix") if server_prefix else None
        self.listen, self.where = listen, where
        self._revisions: dict[str, tuple[str, str]] = {}     # address -> (revision, instance), this process

    # --- reading ----------------------------------------------------------------------------------------
    async def _ask(self, line: str) -> str:
        answer = await self.channel.send(line)
        text = answer.strip()
        if text.startswith(("Can't find backend", "No such backend")):
            raise HaproxyError(f"{self.where} has no backend {self.backend!r}")
        if text.startswith(("Unknown command", "Permission denied")):
            raise HaproxyError(f"{self.where} refused `{line}`: {text.splitlines()[0]} (the stats socket "
                               "needs `level admin`)")
        return answer

    async def _set(self, line: str) -> None:
        """Send one `set server` line; HAProxy's error answer becomes the one-line HaproxyError."""
        failed = cmd.set_failed(await self._ask(line))
        if failed is not None:
            raise HaproxyError(f"{self.where} refused `{line}`: {failed}")

    async def slots(self) -> list[Slot]:
        """The backend's server slots (those named prefix + digits), in slot order."""
        rows = [r for r in cmd.table_rows(await self._ask(cmd.show_servers_state(self.backend)))
                if r.get("be_name") == self.backend]
        if not rows:
            raise HaproxyError(f"{self.where} backend {self.backend!r} has no servers (give it a "
                               "server-template, docs/haproxy.md)")
        prefix = self.prefix if self.prefix is not None else default_prefix([r["srv_name"] for r in rows])
        pattern = re.compile(re.escape(prefix) + r"\d+")
        slots = []
        for r in rows:
            if not pattern.fullmatch(r["srv_name"]):
                continue
            try:
                slots.append(Slot(r["srv_name"], r["srv_addr"], int(r["srv_port"]), int(r["srv_admin_state"]),
                                  int(r["srv_op_state"]), int(r["srv_uweight"]),
                                  bool(int(r["srv_check_state"]) & CHECK_CONFIGURED)))
            except (KeyError, ValueError):
                raise HaproxyError(f"{self.where} answered an unreadable server row: {r}") from None
        if not slots:
            raise HaproxyError(f"{self.where} backend {self.backend!r} has no servers named {prefix}<n>")
        return sorted(slots, key=lambda s: int(s.name[len(prefix):]))

    async def _stat_rows(self) -> dict[str, dict[str, str]]:
        answer = await self._ask(cmd.show_stat(self.backend))
        return {r["svname"]: r for r in cmd.csv_rows(answer) if r.get("pxname") == self.backend}

    # --- the Router protocol ----------------------------------------------------------------------------
    async def ensure(self) -> str | None:
        """HAProxy's config is the user's: check the backend and its slots exist and the front listens."""
        await self.slots()
        if self.listen:
            host, _, port = self.listen.rpartition(":")
            try:
                async with asyncio.timeout(5.0):
                    _, writer = await asyncio.open_connection(host.strip("[]"), int(port))
                writer.close()
            except (OSError, TimeoutError):
                raise HaproxyError(f"nothing listens on {self.listen}, the HAProxy frontend configured as "
                                   "`listen`") from None
        return self.listen

    async def set_backends(self, backends: list[WeightedBackend]) -> None:
        parts = [cmd.split_address(b.address) for b in backends]      # refuses a bad address up front
        if len({p for p in parts}) != len(parts):
            raise HaproxyError("the same address appears twice in one backend set")
        if any(b.weight < 0 for b in backends):
            raise HaproxyError("a backend weight is negative")
        weights = haproxy_weights([b.weight for b in backends])
        wanted = [(ip, port, w) for (ip, port), w in zip(parts, weights, strict=True)]
        for line in plan(self.backend, await self.slots(), wanted):
            await self._set(line)
        self._revisions = {b.address: (b.revision, b.instance) for b in backends}
        live = {(s.address, s.weight) for s in await self.slots() if s.serving}
        expect = {(b.address, w) for b, w in zip(backends, weights, strict=True)}
        if live != expect:
            raise HaproxyError(f"{self.where} backend {self.backend!r} serves {sorted(live)} after the change, "
                               f"not {sorted(expect)}")

    async def backends(self) -> list[WeightedBackend]:
        return [WeightedBackend(s.address, s.weight, *self._revisions.get(s.address, ("", "")))
                for s in await self.slots() if s.serving]

    async def drain(self, address: str, timeout: float, ws_timeout: float | None = None) -> int:
        """Put the server holding `address` in drain and wait (up to the larger budget) for its sessions."""
        slot = next((s for s in await self.slots() if s.address == address and not s.in_maint), None)
        if slot is None:
            return 0
        if not slot.draining:
            await self._set(cmd.set_weight(self.backend, slot.name, 0))
            await self._set(cmd.set_state(self.backend, slot.name, "drain"))
        loop = asyncio.get_running_loop()
        deadline = loop.time() + max(timeout, ws_timeout or 0.0)
        while True:
            row = (await self._stat_rows()).get(slot.name, {})
            left = int(row.get("scur") or 0)
            if left == 0 or loop.time() >= deadline:
                break
            await asyncio.sleep(min(POLL_INTERVAL, max(0.0, deadline - loop.time())))
        if left == 0:           # empty: the slot is free for the next change
            await self._set(cmd.set_state(self.backend, slot.name, "maint"))
        return left

    async def verify(self, backends: list[WeightedBackend]) -> bool | None:
        try:
            live = {(b.address, b.weight) for b in await self.backends()}
        except HaproxyError:
            return None         # unreachable: cannot tell
        weights = haproxy_weights([b.weight for b in backends])
        return live == {(b.address, w) for b, w in zip(backends, weights, strict=True)}

    async def stats(self) -> dict[str, Any]:
        """Per server: sessions now and in all, requests, 4xx/5xx answers, errors (HAProxy's counters)."""
        slots = {s.name: s for s in await self.slots()}
        rows = await self._stat_rows()
        out: dict[str, Any] = {"listen": self.listen, "backend": self.backend, "backends": [],
                               "per_backend": {}, "per_revision": {}}
        for name, slot in slots.items():
            row = rows.get(name, {})
            counters = _counters(row)
            if slot.serving:
                revision, instance = self._revisions.get(slot.address, ("", ""))
                out["backends"].append({"address": slot.address, "weight": slot.weight, "revision": revision,
                                        "instance": instance, "server": name, "status": row.get("status", "")})
            if slot.in_maint and not counters["requests"]:
                continue
            out["per_backend"][slot.address] = counters
            rev = self._revisions.get(slot.address, ("", ""))[0]
            total = out["per_revision"].setdefault(rev, dict.fromkeys(counters, 0))
            for key, value in counters.items():
                total[key] += value
        return out


def _counters(row: dict[str, str]) -> dict[str, int]:
    def n(key: str) -> int:
        value = row.get(key) or "0"
        return int(value) if value.isdigit() else 0

    answered = sum(n(f"hrsp_{k}") for k in ("1xx", "2xx", "3xx", "4xx", "5xx", "other"))
    return {"sessions": n("scur"), "sessions_total": n("stot"), "requests": n("req_tot") or answered,
            "4xx": n("hrsp_4xx"), "5xx": n("hrsp_5xx"), "errors": n("econ") + n("eresp")}
