"""What shipyard writes for nginx and the commands it runs on it, as data (tested without an nginx).

shipyard owns one file, included by the user's nginx.conf inside `http {}`: the service's `upstream` block
and a tiny status server on a loopback address that answers the generation (a hash of the upstream it was
rendered with). After a graceful reload, the new workers answer the new generation: that is how shipyard
reads back what really serves instead of trusting the file it wrote.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass

STATUS_PATH = "/__shipyard/generation"
_ADDRESS = re.compile(r"^(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.-]+):[0-9]{1,5}$")
_NAME = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")
_SERVER = re.compile(r"^\s*server\s+(\S+)\s+weight=(\d+)(?:\s+max_fails=\d+)?;\s*#\s*(\S*)\s+(\S*)\s*$")


@dataclass(frozen=True)
class Server:
    address: str
    weight: int
    revision: str = ""
    instance: str = ""


def check_name(value: str, what: str) -> str:
    if not _NAME.fullmatch(value):
        raise ValueError(f"invalid {what} {value!r}: 1-64 letters, digits, '_', '.' or '-'")
    return value


def check_address(value: str) -> str:
    if not _ADDRESS.fullmatch(value) or not 0 < int(value.rsplit(":", 1)[1]) < 65536:
        raise ValueError(f"invalid backend address {value!r}: expected host:port")
    return value


def _label(value: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.:-]", "_", value) or "-"


def upstream_block(upstream: str, servers: list[Server]) -> str:
    """The upstream with weighted servers. nginx needs at least one server: with none serving, one that is
    `down` (requests get 502, as with HAProxy's empty backend), never a silent fallback."""
    lines = [f"upstream {check_name(upstream, 'upstream name')} {{"]
    live = [s for s in servers if s.weight > 0]
    for s in live:
        lines.append(f"    server {check_address(s.address)} weight={min(s.weight, 1000)} max_fails=0; "
                     f"# {_label(s.revision)} {_label(s.instance)}")
    if not live:
        lines.append("    server 127.0.0.1:9 down;  # nothing serves")
    lines += ["    keepalive 16;", "}"]
    return "\n".join(lines) + "\n"


def generation(servers: list[Server]) -> str:
    """What serves, as a short hash of the weighted addresses (not of labels or comments)."""
    live = sorted(f"{s.address} {min(s.weight, 1000)}" for s in servers if s.weight > 0)
    return hashlib.sha256("\n".join(live).encode()).hexdigest()[:16]


def render(upstream: str, servers: list[Server], status_listen: str) -> tuple[str, str]:
    """The file shipyard owns and its generation."""
    block = upstream_block(upstream, servers)
    gen = generation(servers)
    text = (f"# Written by shipyard for upstream {upstream}: do not edit (the next deploy replaces it).\n"
            f"{block}"
            f"server {{\n    listen {check_address(status_listen)};\n"
            f"    location = {STATUS_PATH} {{ default_type text/plain; return 200 \"{gen}\\n\"; }}\n}}\n")
    return text, gen


def parse_servers(text: str) -> list[Server]:
    """The servers of a file render() wrote (what shipyard last set)."""
    out = []
    for line in text.splitlines():
        m = _SERVER.match(line)
        if m:
            out.append(Server(m.group(1), int(m.group(2)), m.group(3).strip("-"), m.group(4).strip("-")))
    return out


def test_argv(binary: str, conf: str) -> list[str]:
    return [binary, "-t", "-q", "-c", conf]


def reload_argv(binary: str, conf: str) -> list[str]:
    return [binary, "-s", "reload", "-c", conf]


SHUTTING_DOWN = "worker process is shutting down"
