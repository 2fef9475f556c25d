"""A real nginx for tests of the nginx router: a private prefix (-p, -e: nothing of the Debian package's
/etc/nginx or /var/log/nginx is used) with its own nginx.conf that includes the upstream file shipyard owns,
proxies a front address to that upstream, and keeps a pid file so `nginx -s reload -c CONF` works. The
Debian package's binary, in the foreground (`daemon off`), stopped when the block ends: on loopback
(nginx_process) or inside a namespaced test host, files in its private /srv (nginx_on_host)."""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from shipyard.commands.nginx import Server, render
from shipyard.testing.processes import server_process
from shipyard.testing.receivers import free_port

CONF = """{user}worker_processes 1;
pid {dir}/nginx.pid;
error_log {dir}/error.log warn;
events {{ worker_connections 512; }}
http {{
    access_log off;
    client_body_temp_path {dir}/body;
    proxy_temp_path {dir}/proxy;
    fastcgi_temp_path {dir}/fastcgi;
    uwsgi_temp_path {dir}/uwsgi;
    scgi_temp_path {dir}/scgi;
    include {upstream_file};
    server {{
        listen {listen};
        location / {{
            proxy_pass http://{upstream};
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_next_upstream error timeout;
            proxy_connect_timeout 2s;
        }}
    }}
}}
"""


TEMP_DIRS = ("body", "proxy", "fastcgi", "uwsgi", "scgi")


def nginx_conf(dir: str | Path, *, listen: str, upstream_file: str | Path, upstream: str) -> str:
    """nginx.conf for a prefix `dir` (pid, logs and temp dirs there) proxying `listen` to `upstream`."""
    return CONF.format(user="user root;\n" if os.geteuid() == 0 else "", dir=dir, upstream_file=upstream_file,
                       listen=listen, upstream=upstream)


def nginx_argv(binary: str, dir: str | Path, conf: str | Path) -> list[str]:
    return [binary, "-p", f"{dir}/", "-e", f"{dir}/error.log", "-c", str(conf), "-g", "daemon off;"]


def nginx_binary() -> str | None:
    return shutil.which("nginx") or shutil.which("nginx", path="/usr/sbin:/usr/local/sbin")


@dataclass
class Nginx:
    proc: subprocess.Popen[bytes]
    conf: str
    upstream_file: str
    upstream: str
    status: str
    listen: str
    dir: Path

    @property
    def url(self) -> str:
        return f"http://{self.listen}"


@contextlib.contextmanager
def nginx_process(binary: str, *, upstream: str = "app", port: int | None = None,
                  timeout: float = 15.0) -> Iterator[Nginx]:
    tmp = Path(tempfile.mkdtemp(prefix="shy-ngx-", dir="/tmp"))
    for sub in TEMP_DIRS:
        (tmp / sub).mkdir()
    port = port or free_port()
    status = f"127.0.0.1:{free_port()}"
    upstream_file = tmp / "shipyard-upstream.conf"
    upstream_file.write_text(render(upstream, [Server("127.0.0.1:9", 0)], status)[0])
    conf = tmp / "nginx.conf"
    conf.write_text(nginx_conf(tmp, listen=f"127.0.0.1:{port}", upstream_file=upstream_file, upstream=upstream))
    log = tmp / "stdout.log"

    def exited(_: subprocess.Popen[Any]) -> RuntimeError:
        return RuntimeError(f"nginx exited: {log.read_text()[-500:]} {(tmp / 'error.log').read_text()[-500:]}")

    try:
        with server_process(nginx_argv(binary, tmp, conf), log=log, ready=(tmp / "nginx.pid").exists,
                            exited=exited, timeout=timeout, what="nginx's pid file", interval=0.02) as proc:
            yield Nginx(proc, str(conf), str(upstream_file), upstream, status, f"127.0.0.1:{port}", tmp)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


@contextlib.contextmanager
def nginx_on_host(host: Any, binary: str, *, dir: str = "/srv/nginx", port: int = 8080, upstream: str = "app",
                  status: str = "127.0.0.1:8099", timeout: float = 15.0) -> Iterator[Nginx]:
    """nginx inside a namespaced test host (tests/nethosts.py TestHost: `run`, `popen`, `address`), its
    prefix in the host's private /srv (the controller cannot see those files: a router that changes them
    did so over SSH), the front on the host's address, the status server on the host's own loopback."""
    host.run(["mkdir", "-p", *(f"{dir}/{sub}" for sub in TEMP_DIRS)])
    upstream_file, conf = f"{dir}/shipyard-upstream.conf", f"{dir}/nginx.conf"
    host.run(["tee", upstream_file], input=render(upstream, [Server("127.0.0.1:9", 0)], status)[0])
    host.run(["tee", conf], input=nginx_conf(dir, listen=f"{host.address}:{port}", upstream_file=upstream_file,
                                             upstream=upstream))
    def exited(proc: subprocess.Popen[Any]) -> RuntimeError:
        return RuntimeError(f"nginx exited on {host.name}: {proc.stderr.read() if proc.stderr else b''!r}")

    with server_process(nginx_argv(binary, dir, conf), host=host, stdout=subprocess.DEVNULL,
                        stderr=subprocess.PIPE, exited=exited, timeout=timeout,
                        ready=lambda: host.run(["test", "-s", f"{dir}/nginx.pid"], check=False).returncode == 0,
                        what=f"nginx's pid file on {host.name}") as proc:
        yield Nginx(proc, conf, upstream_file, upstream, status, f"{host.address}:{port}", Path(dir))
