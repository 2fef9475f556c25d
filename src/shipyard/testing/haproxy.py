"""A real HAProxy on loopback for tests and benchmarks of the HAProxy router.

A temp config with one frontend, a backend of `server-template` slots, a stats socket at `level admin`
and one at `level operator`; HAProxy runs in the foreground (-db) and is stopped (SIGTERM, then SIGKILL)
when the block ends. Nothing here is a stand-in: it is the Debian package's binary. On loopback
(haproxy_process) or inside a namespaced test host, its sockets in the host's private /srv (haproxy_on_host).
"""

from __future__ import annotations

import contextlib
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from shipyard.testing.processes import server_process
from shipyard.testing.receivers import free_port

SLOTS_CFG = """
global
    stats socket {admin} mode 600 level admin
    stats socket {operator} mode 600 level operator
    maxconn 500
defaults
    mode http
    option http-keep-alive
    option redispatch
    retries 2
    timeout connect 2s
    timeout client 30s
    timeout server 30s
frontend web
    bind {bind}:{port}
    default_backend {backend}
backend {backend}
    balance roundrobin
    server-template {prefix} 1-{slots} 0.0.0.0:0 disabled check inter 1s
"""


def haproxy_binary() -> str | None:
    return shutil.which("haproxy") or shutil.which("haproxy", path="/usr/sbin:/usr/local/sbin")


@dataclass
class Haproxy:
    proc: subprocess.Popen[bytes]
    socket: str
    operator_socket: str
    listen: str
    backend: str
    log: Path

    @property
    def url(self) -> str:
        return f"http://{self.listen}"

    @property
    def port(self) -> int:
        return int(self.listen.rsplit(":", 1)[1])


def _socket_open(path: str) -> bool:
    with socket.socket(socket.AF_UNIX) as s:
        try:
            s.connect(path)
        except OSError:
            return False
    return True


@contextlib.contextmanager
def haproxy_process(binary: str, *, slots: int = 4, backend: str = "app", prefix: str = "app",
                    port: int | None = None, timeout: float = 15.0) -> Iterator[Haproxy]:
    # Unix socket paths are limited to ~107 bytes (a test's tmp_path can be longer): a short dir in /tmp.
    tmp = Path(tempfile.mkdtemp(prefix="shy-hx-", dir="/tmp"))
    admin, operator, port = str(tmp / "admin.sock"), str(tmp / "operator.sock"), port or free_port()
    cfg = tmp / "haproxy.cfg"
    cfg.write_text(SLOTS_CFG.format(admin=admin, operator=operator, bind="127.0.0.1", port=port, slots=slots,
                                    backend=backend, prefix=prefix))
    log = tmp / "haproxy.log"

    def exited(proc: subprocess.Popen[Any]) -> AssertionError:
        return AssertionError(f"haproxy exited ({proc.returncode}): {log.read_text()[-2000:]}")

    try:
        with server_process([binary, "-db", "-f", str(cfg)], log=log, ready=lambda: _socket_open(admin),
                            exited=exited, timeout=timeout, what=f"haproxy's stats socket {admin}",
                            interval=0.02) as proc:
            yield Haproxy(proc, admin, operator, f"127.0.0.1:{port}", backend, log)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


_CONNECTS = "import socket, sys\ns = socket.socket(socket.AF_UNIX)\ns.connect(sys.argv[1])\n"


@contextlib.contextmanager
def haproxy_on_host(host: Any, binary: str, *, dir: str = "/srv/haproxy", slots: int = 4, backend: str = "app",
                    prefix: str = "app", port: int = 8080, timeout: float = 15.0) -> Iterator[Haproxy]:
    """HAProxy inside a namespaced test host (tests/nethosts.py TestHost: `run`, `popen`, `address`, `name`):
    its stats sockets in the host's private /srv (reachable only from inside it: over SSH, a streamlocal
    channel), the frontend on the host's address."""
    import sys

    host.run(["mkdir", "-p", dir])
    admin, operator, cfg = f"{dir}/admin.sock", f"{dir}/operator.sock", f"{dir}/haproxy.cfg"
    host.run(["tee", cfg], input=SLOTS_CFG.format(admin=admin, operator=operator, bind=host.address, port=port,
                                                  slots=slots, backend=backend, prefix=prefix))
    def exited(proc: subprocess.Popen[Any]) -> AssertionError:
        return AssertionError(f"haproxy exited on {host.name}: {proc.stderr.read() if proc.stderr else b''!r}")

    with server_process([binary, "-db", "-f", cfg], host=host, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                        ready=lambda: host.run([sys.executable, "-c", _CONNECTS, admin], check=False).returncode == 0,
                        exited=exited, timeout=timeout, what=f"haproxy's stats socket on {host.name}") as proc:
        yield Haproxy(proc, admin, operator, f"{host.address}:{port}", backend, Path(dir) / "haproxy.log")
