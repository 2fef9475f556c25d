"""A real nginx on loopback for tests of the nginx router: a private prefix with its own nginx.conf that
includes the upstream file shipyard owns, proxies a front address to that upstream, and keeps a pid file so
`nginx -s reload -c CONF` works. The Debian package's binary, in the foreground (`daemon off`), stopped when
the block ends."""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from shipyard.commands.nginx import Server, render
from shipyard.testing.receivers import free_port
from shipyard.testing.wait import wait_until

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
        listen 127.0.0.1:{port};
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
    for sub in ("body", "proxy", "fastcgi", "uwsgi", "scgi"):
        (tmp / sub).mkdir()
    port = port or free_port()
    status = f"127.0.0.1:{free_port()}"
    upstream_file = tmp / "shipyard-upstream.conf"
    upstream_file.write_text(render(upstream, [Server("127.0.0.1:9", 0)], status)[0])
    conf = tmp / "nginx.conf"
    conf.write_text(CONF.format(user="user root;\n" if os.geteuid() == 0 else "", dir=tmp,
                                upstream_file=upstream_file, port=port, upstream=upstream))
    log = tmp / "stdout.log"
    with log.open("wb") as out:
        proc = subprocess.Popen([binary, "-c", str(conf), "-g", "daemon off;"], stdout=out, stderr=subprocess.STDOUT)
    try:
        wait_until(lambda: (tmp / "nginx.pid").exists() or proc.poll() is not None, timeout, "nginx's pid file",
                   interval=0.02)
        if proc.poll() is not None:
            raise RuntimeError(f"nginx exited: {log.read_text()[-500:]} {(tmp / 'error.log').read_text()[-500:]}")
        yield Nginx(proc, str(conf), str(upstream_file), upstream, status, f"127.0.0.1:{port}", tmp)
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        shutil.rmtree(tmp, ignore_errors=True)
