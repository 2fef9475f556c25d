"""What shipyard writes for nginx and the commands it runs on it, as data (tested without an nginx).

shipyard owns one file, included by the user's nginx.conf inside `http {}`: the service's `upstream` block
and a tiny status server on a loopback address that answers the generation (a hash of the upstream it was
rendered with) and the pid of the worker that answered. After a graceful reload, only the new workers
answer the new generation: that is how shipyard reads back what really serves instead of trusting the file
it wrote. The worker's pid names its master, whose other children `ps` shows "shutting down" while they
finish the requests they held before the reload (nginx's drain).
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
            f"    location = {STATUS_PATH} {{ default_type text/plain; return 200 \"{gen} $pid\\n\"; }}\n}}\n")
    return text, gen


def parse_servers(text: str) -> list[Server]:
    """The servers of a file render() wrote (what shipyard last set)."""
    out = []
    for line in text.splitlines():
        m = _SERVER.match(line)
        if m:
            out.append(Server(m.group(1), int(m.group(2)), m.group(3).strip("-"), m.group(4).strip("-")))
    return out


def parse_status(body: str) -> tuple[str, int | None] | None:
    """(generation, worker pid) from the status server's answer; None when it is not one (another server
    on that address). The pid is None for a file an older shipyard rendered (generation only)."""
    parts = body.split()
    if not parts or not re.fullmatch(r"[0-9a-f]{16}", parts[0]):
        return None
    pid = int(parts[1]) if len(parts) > 1 and parts[1].isdigit() else None
    return parts[0], pid


def status_request(status_listen: str) -> bytes:
    """The HTTP/1.0 request for the generation (sent over a plain TCP stream, local or an SSH channel)."""
    return f"GET {STATUS_PATH} HTTP/1.0\r\nHost: {status_listen}\r\nConnection: close\r\n\r\n".encode()


def parse_response(raw: bytes) -> str | None:
    """The body of a 200 answer; None for anything else."""
    head, sep, body = raw.partition(b"\r\n\r\n")
    status = head.split(b"\r\n", 1)[0].split()
    if not sep or len(status) < 2 or status[1] != b"200":
        return None
    return body.decode("utf-8", "replace").strip()


def ps_argv() -> list[str]:
    return ["ps", "-eo", "pid=,ppid=,args="]


def workers(ps_text: str, worker_pid: int) -> tuple[int | None, dict[int, bool]]:
    """(master pid, {worker pid: shutting down}) of the nginx one of whose workers answered the status
    server, from `ps -eo pid=,ppid=,args=`. Only that master's children: other nginx instances on the
    machine (and their reloads) are not ours. Master None: that worker is gone (it was an old one)."""
    rows = []
    for line in ps_text.splitlines():
        parts = line.split(None, 2)
        if len(parts) >= 2 and parts[0].isdigit() and parts[1].isdigit():
            rows.append((int(parts[0]), int(parts[1]), parts[2] if len(parts) > 2 else ""))
    master = next((ppid for pid, ppid, _ in rows if pid == worker_pid), None)
    if master is None:
        return None, {}
    return master, {pid: SHUTTING_DOWN in args for pid, ppid, args in rows
                    if ppid == master and "worker process" in args}


def old_workers(kids: dict[int, bool], before_reload: set[int]) -> int:
    """Workers of an earlier generation still running: the ones shutting down, and the ones that were
    there before our last reload (right after a reload an old worker may not have been told yet)."""
    return sum(1 for pid, shutting in kids.items() if shutting or pid in before_reload)


def still_accepting(kids: dict[int, bool], before_reload: set[int]) -> int:
    """Workers from before the reload that have not started shutting down: they may still take a new
    connection and send it to the old upstream."""
    return sum(1 for pid, shutting in kids.items() if pid in before_reload and not shutting)


_LOG_LINE = re.compile(r"\[(emerg|alert|crit|error)\]\s+(?:\d+#\d+:\s*)?(?:\*\d+\s+)?(.*)$")


def error_line(output: str, code: int) -> str:
    """nginx's one line that says what is wrong (`unknown directive "x" in /etc/nginx/nginx.conf:3`), not
    the summary after it ("configuration file ... test failed"); the last line when there is none."""
    lines = [line.strip() for line in output.strip().splitlines() if line.strip()]
    for line in lines:
        m = _LOG_LINE.search(line)
        if m:
            return f"[{m.group(1)}] {m.group(2)}"
    return lines[-1] if lines else f"exit {code}"


def config_test_argv(binary: str, conf: str) -> list[str]:
    return [binary, "-t", "-q", "-c", conf]


def reload_argv(binary: str, conf: str) -> list[str]:
    return [binary, "-s", "reload", "-c", conf]


SHUTTING_DOWN = "worker process is shutting down"
