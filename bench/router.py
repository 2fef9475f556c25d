"""Benchmark: built-in router vs HAProxy vs direct, in front of the same nginx backend.

    python bench/router.py [--json] [--connections 50] [--duration 10] [--rate 1000]

Two measurements per target, the same client for all three:
- max throughput: wrk with a fixed number of keep-alive connections;
- latency at a fixed rate: an open-loop paced client (own process, uvloop, raw sockets) that sends
  ``--rate`` requests per second whatever the answers do, and reports p50/p99.
The router runs in its own process on uvloop as the agent runs it (normal RouterServer: drain support
and metrics on); HAProxy gets one thread so both proxies have one core's worth of event loop.
Not a test: numbers depend on the machine; what matters are the ratios printed at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

PYTHON = sys.executable
HERE = Path(__file__).resolve()
REQUEST = b"GET / HTTP/1.1\r\nHost: bench\r\n\r\n"


# -- tools --------------------------------------------------------------------------------------
def ensure_tool(binary: str, packages: list[str]) -> str:
    """Find a binary or apt-install it (Debian package names); bench machines start bare."""
    found = shutil.which(binary) or shutil.which(binary, path="/usr/sbin:/usr/bin")
    if found:
        return found
    for attempt in range(2):
        if attempt:
            subprocess.run(["apt-get", "update", "-qq"], check=False)
        for pkg in packages:
            env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
            if subprocess.run(["apt-get", "install", "-y", "-qq", pkg], env=env, check=False).returncode == 0:
                found = shutil.which(binary) or shutil.which(binary, path="/usr/sbin:/usr/bin")
                if found:
                    return found
    raise SystemExit(f"bench: {binary} is missing and could not be installed (apt-get install {packages[0]})")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_http(port: int, timeout: float = 15.0) -> None:
    """Block until something answers an HTTP request on the port (with a deadline)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1) as s:
                s.sendall(b"GET / HTTP/1.1\r\nHost: bench\r\nConnection: close\r\n\r\n")
                if s.recv(64).startswith(b"HTTP/1.1 200"):
                    return
        except OSError:
            pass
        time.sleep(0.05)
    raise SystemExit(f"bench: nothing answered on port {port}")


# -- the three targets --------------------------------------------------------------------------
NGINX_CONF = """
{user}
worker_processes 1;
daemon off;
pid {tmp}/nginx.pid;
error_log {tmp}/nginx-error.log warn;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    client_body_temp_path {tmp}/nginx-body;
    proxy_temp_path {tmp}/nginx-proxy;
    fastcgi_temp_path {tmp}/nginx-fastcgi;
    uwsgi_temp_path {tmp}/nginx-uwsgi;
    scgi_temp_path {tmp}/nginx-scgi;
    keepalive_requests 10000000;
    keepalive_timeout 120s;
    server {{
        listen 127.0.0.1:{port} backlog=4096;
        location / {{ return 200 "hello from the backend\\n"; }}
    }}
}}
"""

HAPROXY_CONF = """
global
    nbthread 1
    maxconn 20000
defaults
    mode http
    timeout connect 5s
    timeout client 60s
    timeout server 60s
    option http-keep-alive
frontend bench
    bind 127.0.0.1:{port}
    default_backend app
backend app
    http-reuse always
    server app1 127.0.0.1:{backend}
"""


class Procs:
    """Every process the bench starts, stopped in reverse order whatever happens."""

    def __init__(self) -> None:
        self.procs: list[subprocess.Popen[bytes]] = []

    def start(self, argv: list[str], log: Path) -> subprocess.Popen[bytes]:
        with log.open("wb") as out:
            proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        self.procs.append(proc)
        return proc

    def stop_all(self) -> None:
        for proc in reversed(self.procs):
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in reversed(self.procs):
            try:
                proc.wait(5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)


# -- measurements -------------------------------------------------------------------------------
def run_wrk(wrk: str, port: int, connections: int, duration: int) -> dict[str, Any]:
    argv = [wrk, "-t", "1", "-c", str(connections), "-d", f"{duration}s", f"http://127.0.0.1:{port}/"]
    out = subprocess.run(argv, capture_output=True, text=True, check=True).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    errors = 0
    m = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    if m:
        errors += int(m.group(1))
    m = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    if m:
        errors += sum(int(x) for x in m.groups())
    return {"max_rps": round(rps, 1), "wrk_errors": errors}


def run_paced(port: int, rate: int, duration: int) -> dict[str, Any]:
    argv = [PYTHON, str(HERE), "_pace", "--port", str(port), "--rate", str(rate), "--duration", str(duration)]
    out = subprocess.run(argv, capture_output=True, text=True, check=True).stdout
    return dict(json.loads(out.strip().splitlines()[-1]))


def measure(wrk: str, port: int, args: argparse.Namespace) -> dict[str, Any]:
    run_wrk(wrk, port, args.connections, 2)  # warm-up: pools, caches, CPU frequency
    result = run_wrk(wrk, port, args.connections, args.duration)
    paced = run_paced(port, args.rate, args.duration)
    return {
        "max_rps": result["max_rps"],
        "p50_ms": paced["p50_ms"],
        "p99_ms": paced["p99_ms"],
        "errors": result["wrk_errors"] + paced["errors"],
        "paced_sent": paced["sent"],
        "paced_late": paced["late"],
    }


# -- subprocess roles ---------------------------------------------------------------------------
def serve_router(port: int, backend: int) -> None:
    """The built-in router as the agent runs it: own process, uvloop policy, normal RouterServer."""
    import uvloop

    from shipyard.agent.router import Backend, RouterServer

    async def main() -> None:
        router = RouterServer("bench/prod", f"127.0.0.1:{port}")
        await router.start()
        router.set_backends([Backend(f"127.0.0.1:{backend}", 100, "bench", "nginx-1")])
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        loop.add_signal_handler(signal.SIGTERM, stop.set)
        loop.add_signal_handler(signal.SIGINT, stop.set)
        await stop.wait()
        await router.close()

    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    asyncio.run(main())


def pace(port: int, rate: int, duration: int, conns: int = 32) -> None:
    """Open-loop client: request i is due at t0 + i/rate, sent on any idle keep-alive connection.

    Latency is measured from the moment the request was due (not when a connection freed up), so a
    stalled target cannot hide its queueing (no coordinated omission).
    """
    import httptools
    import uvloop

    latencies: list[float] = []
    state = {"errors": 0, "late": 0}

    class Conn(asyncio.Protocol):
        def __init__(self, idle: list[Conn]) -> None:
            self.idle = idle
            self.transport: asyncio.Transport | None = None
            self.parser = httptools.HttpResponseParser(self)
            self.due = 0.0
            self.status = 0

        def connection_made(self, transport: asyncio.BaseTransport) -> None:
            self.transport = transport  # type: ignore[assignment]
            self.idle.append(self)

        def send(self, due: float) -> None:
            self.due = due
            self.transport.write(REQUEST)  # type: ignore[union-attr]

        def data_received(self, data: bytes) -> None:
            try:
                self.parser.feed_data(data)
            except httptools.HttpParserError:
                state["errors"] += 1
                self.transport.close()  # type: ignore[union-attr]

        def on_headers_complete(self) -> None:
            self.status = self.parser.get_status_code()

        def on_message_complete(self) -> None:
            latencies.append(time.perf_counter() - self.due)
            if self.status != 200:
                state["errors"] += 1
            self.idle.append(self)

        def connection_lost(self, exc: Exception | None) -> None:
            if self in self.idle:
                self.idle.remove(self)
            else:
                state["errors"] += 1

    async def main() -> None:
        loop = asyncio.get_running_loop()
        idle: list[Conn] = []
        for _ in range(conns):
            await loop.create_connection(lambda: Conn(idle), "127.0.0.1", port)
        interval = 1.0 / rate
        total = rate * duration
        t0 = time.perf_counter() + 0.05
        i = 0
        while i < total:
            now = time.perf_counter()
            while i < total and t0 + i * interval <= now:
                if not idle:
                    state["late"] += 1  # every connection busy: wait for one, latency keeps counting
                    break
                idle.pop().send(t0 + i * interval)
                i += 1
            await asyncio.sleep(max(0.0, min(t0 + i * interval - time.perf_counter(), 0.0005)))
        deadline = time.perf_counter() + 10
        while len(latencies) + state["errors"] < total and time.perf_counter() < deadline:
            await asyncio.sleep(0.01)
        state["errors"] += total - len(latencies) - state["errors"] if len(latencies) < total else 0

    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    asyncio.run(main())
    latencies.sort()
    n = len(latencies)

    def pct(p: float) -> float:
        return round(latencies[min(n - 1, int(p * n))] * 1000, 3) if n else -1.0

    print(json.dumps({"p50_ms": pct(0.50), "p99_ms": pct(0.99), "errors": state["errors"],
                      "sent": n, "late": state["late"]}))


# -- main ---------------------------------------------------------------------------------------
def bench(args: argparse.Namespace) -> dict[str, Any]:
    wrk = ensure_tool("wrk", ["wrk"])
    haproxy = ensure_tool("haproxy", ["haproxy"])
    nginx = ensure_tool("nginx", ["nginx-light", "nginx"])
    procs = Procs()
    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="shipyard-bench-") as tmpdir:
        tmp = Path(tmpdir)
        ports = {"nginx": free_port(), "haproxy": free_port(), "builtin": free_port()}
        try:
            user = "user root;" if os.geteuid() == 0 else ""
            (tmp / "nginx.conf").write_text(NGINX_CONF.format(user=user, tmp=tmp, port=ports["nginx"]))
            procs.start([nginx, "-c", str(tmp / "nginx.conf"), "-p", str(tmp)], tmp / "nginx.log")
            wait_http(ports["nginx"])
            (tmp / "haproxy.cfg").write_text(HAPROXY_CONF.format(port=ports["haproxy"], backend=ports["nginx"]))
            procs.start([haproxy, "-db", "-f", str(tmp / "haproxy.cfg")], tmp / "haproxy.log")
            wait_http(ports["haproxy"])
            procs.start([PYTHON, str(HERE), "_router", "--port", str(ports["builtin"]),
                         "--backend", str(ports["nginx"])], tmp / "router.log")
            wait_http(ports["builtin"])
            for name, port in (("direct", ports["nginx"]), ("haproxy", ports["haproxy"]),
                               ("builtin", ports["builtin"])):
                if not args.json:
                    print(f"measuring {name} ...", file=sys.stderr)
                results[name] = measure(wrk, port, args)
        finally:
            procs.stop_all()
    out = {k: results[k] for k in ("builtin", "haproxy", "direct")}
    out["ratio_builtin_haproxy_rps"] = round(results["builtin"]["max_rps"] / results["haproxy"]["max_rps"], 3)
    out["p99_added_ms"] = round(results["builtin"]["p99_ms"] - results["direct"]["p99_ms"], 3)
    out["haproxy_p99_added_ms"] = round(results["haproxy"]["p99_ms"] - results["direct"]["p99_ms"], 3)
    out["settings"] = {"connections": args.connections, "duration_s": args.duration, "rate": args.rate,
                       "cpus": os.cpu_count()}
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="role")
    r = sub.add_parser("_router")
    r.add_argument("--port", type=int, required=True)
    r.add_argument("--backend", type=int, required=True)
    p = sub.add_parser("_pace")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--rate", type=int, required=True)
    p.add_argument("--duration", type=int, required=True)
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--connections", type=int, default=50, help="wrk connections (default 50)")
    parser.add_argument("--duration", type=int, default=10, help="seconds per measurement (default 10)")
    parser.add_argument("--rate", type=int, default=1000, help="paced requests per second (default 1000)")
    args = parser.parse_args()
    if args.role == "_router":
        serve_router(args.port, args.backend)
        return
    if args.role == "_pace":
        pace(args.port, args.rate, args.duration)
        return
    out = bench(args)
    if args.json:
        print(json.dumps(out))
        return
    print(f"{'target':<10}{'max req/s':>12}{'p50 ms':>10}{'p99 ms':>10}{'errors':>8}")
    for name in ("builtin", "haproxy", "direct"):
        row = out[name]
        print(f"{name:<10}{row['max_rps']:>12.0f}{row['p50_ms']:>10.3f}{row['p99_ms']:>10.3f}{row['errors']:>8}")
    print(f"builtin/haproxy throughput: {out['ratio_builtin_haproxy_rps']:.2f}   "
          f"p99 added over direct: builtin {out['p99_added_ms']:.3f} ms, haproxy {out['haproxy_p99_added_ms']:.3f} ms")


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        main()
