"""Lines of HAProxy's runtime API (the stats socket), built from checked parts.

The runtime API reads a line and runs it; `;` separates commands on one line, and a newline ends it.
Every name and value put into a line here is checked against a narrow grammar first, so nothing a
config or a caller supplies can add a second command (`app; shutdown sessions`), a second line, or an
argument (`app1 weight 0`). A refused part raises HaproxyCommandError, before anything is sent.
"""

from __future__ import annotations

import ipaddress
import re
from typing import Literal

from shipyard.errors import UsageError

# HAProxy's own name charset (proxies and servers) minus nothing: letters, digits, '-', '_', '.', ':'.
_NAME = re.compile(r"[A-Za-z0-9_.:-]{1,64}")
MAX_WEIGHT = 256              # HAProxy's absolute weight range is 0-256
ServerState = Literal["ready", "drain", "maint"]
Health = Literal["up", "stopping", "down"]
STATES: tuple[str, ...] = ("ready", "drain", "maint")
HEALTHS: tuple[str, ...] = ("up", "stopping", "down")


class HaproxyCommandError(UsageError):
    """A name or value that cannot go into a runtime API line as it is."""


def check_name(name: str, what: str = "name") -> str:
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise HaproxyCommandError(f"invalid HAProxy {what} {name!r}: use 1-64 letters, digits, '-', '_', '.' "
                                  "or ':'")
    return name


def check_ip(addr: str) -> str:
    """An IPv4 or IPv6 literal (HAProxy's `set server addr` takes no names here: no resolver is involved)."""
    try:
        return str(ipaddress.ip_address(addr))
    except (ValueError, TypeError):
        raise HaproxyCommandError(f"invalid server address {addr!r}: expected an IP address") from None


def check_port(port: int) -> int:
    # HAProxy takes 99999 and silently keeps it modulo 65536: refuse it here.
    if isinstance(port, bool) or not isinstance(port, int) or not 1 <= port <= 65535:
        raise HaproxyCommandError(f"invalid port {port!r}: expected 1-65535")
    return port


def check_weight(weight: int) -> int:
    if isinstance(weight, bool) or not isinstance(weight, int) or not 0 <= weight <= MAX_WEIGHT:
        raise HaproxyCommandError(f"invalid HAProxy weight {weight!r}: expected 0-{MAX_WEIGHT}")
    return weight


def split_address(address: str) -> tuple[str, int]:
    """"127.0.0.1:8080" or "[::1]:8080" -> (ip, port), both checked."""
    host, sep, port = address.rpartition(":")
    if not sep or not port.isdigit():
        raise HaproxyCommandError(f"invalid backend address {address!r}: expected ip:port")
    return check_ip(host[1:-1] if host.startswith("[") and host.endswith("]") else host), check_port(int(port))


def _server(backend: str, server: str) -> str:
    return f"{check_name(backend, 'backend')}/{check_name(server, 'server')}"


def set_addr(backend: str, server: str, ip: str, port: int) -> str:
    return f"set server {_server(backend, server)} addr {check_ip(ip)} port {check_port(port)}"


def set_weight(backend: str, server: str, weight: int) -> str:
    return f"set server {_server(backend, server)} weight {check_weight(weight)}"


def set_state(backend: str, server: str, state: str) -> str:
    if state not in STATES:
        raise HaproxyCommandError(f"invalid server state {state!r}: expected one of {', '.join(STATES)}")
    return f"set server {_server(backend, server)} state {state}"


def set_health(backend: str, server: str, health: str) -> str:
    if health not in HEALTHS:
        raise HaproxyCommandError(f"invalid server health {health!r}: expected one of {', '.join(HEALTHS)}")
    return f"set server {_server(backend, server)} health {health}"


def show_servers_state(backend: str) -> str:
    return f"show servers state {check_name(backend, 'backend')}"


def show_stat(backend: str) -> str:
    """The CSV stats of one backend's servers (type 4 = servers, sid -1 = all of them)."""
    return f"show stat {check_name(backend, 'backend')} 4 -1"


def show_servers_conn(backend: str) -> str:
    return f"show servers conn {check_name(backend, 'backend')}"


# --- answers ---------------------------------------------------------------------------------------------
# `set server` answers nothing on success, except `addr`, which says what it changed (or that nothing had to).
_SET_OK = re.compile(r"(IP changed from|no need to change|port changed from)")


def set_failed(answer: str) -> str | None:
    """The error HAProxy answered a `set server` line with, as one line; None when it succeeded."""
    text = answer.strip()
    if not text or _SET_OK.match(text):
        return None
    return " ".join(text.split())


def table_rows(answer: str) -> list[dict[str, str]]:
    """Rows of a `show servers state` answer (a version line, a `# name name ...` header, space-separated
    rows) as dicts keyed by the header's names."""
    lines = [line for line in answer.splitlines() if line.strip()]
    header = next((line for line in lines if line.startswith("# ")), None)
    if header is None:
        return []
    names = header[2:].split()
    return [dict(zip(names, line.split(), strict=False)) for line in lines
            if not line.startswith("#") and len(line.split()) >= len(names)]


def csv_rows(answer: str) -> list[dict[str, str]]:
    """Rows of a `show stat` answer (`# pxname,svname,...` then CSV rows) as dicts."""
    lines = [line for line in answer.splitlines() if line.strip()]
    if not lines or not lines[0].startswith("# "):
        return []
    names = lines[0][2:].split(",")
    return [dict(zip(names, line.split(","), strict=False)) for line in lines[1:]]
