"""Benchmark: built-in router vs HAProxy vs direct, in front of the same nginx backend.

    python bench/router.py [--json] [--connections 50] [--duration 10] [--rate 1000]

Two measurements per target, the same client for all three:
- max throughput: wrk with a fixed number of keep-alive connections, ``--rounds`` rounds interleaved
  across the targets, best round kept;
- latency at a fixed rate: an open-loop paced client (own process, uvloop, raw sockets) that sends
  ``--rate`` requests per second whatever the answers do, taking turns between the targets every 100 ms
  so all three share the same background noise; reports p50/p99 per target.
The router runs as a host runs it: a keeper holding the socket, a router generation and its workers
(``--router-workers``, default one process per CPU as HAProxy's threads), the route made through the admin
API (normal RouterServer: drain support, metrics, response parsing before forwarding, forwarding headers);
HAProxy is configured to write the same X-Forwarded-For/-Proto/-Host and runs with its default thread
count (all CPUs). ``--router-workers 1 --haproxy-threads 1`` compares one core with one core. Not a test:
numbers depend on the machine (and on whatever else runs on it); what matters are the side-by-side ratios.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import functools
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

from shipyard.ipc import free_port

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




def wait_http(port: int, log: Path, timeout: float = 15.0) -> None:
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
    tail = log.read_text(errors="replace")[-2000:] if log.exists() else ""
    raise SystemExit(f"bench: nothing answered on port {port}; {log.name}:\n{tail}")


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
    nbthread {threads}
    maxconn 4000
defaults
    mode http
    timeout connect 5s
    timeout client 60s
    timeout server 60s
    option http-keep-alive
frontend bench
    bind 127.0.0.1:{port}
    # The forwarding headers the built-in router always writes, so both proxies do the same work.
    option forwardfor
    http-request set-header X-Forwarded-Proto http
    http-request set-header X-Forwarded-Host %[req.hdr(host)]
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


def run_paced(ports: list[int], rate: int, duration: int) -> dict[str, Any]:
    argv = [PYTHON, str(HERE), "_pace", "--ports", ",".join(map(str, ports)), "--rate", str(rate),
            "--duration", str(duration)]
    out = subprocess.run(argv, capture_output=True, text=True, check=True).stdout
    return dict(json.loads(out.strip().splitlines()[-1]))


def measure(wrk: str, port: int, args: argparse.Namespace) -> dict[str, Any]:
    """One throughput round for one target (after a short warm-up: pools, caches, CPU frequency)."""
    run_wrk(wrk, port, args.connections, 1)
    return run_wrk(wrk, port, args.connections, args.duration)


# -- subprocess roles ---------------------------------------------------------------------------
def start_router(procs: Procs, tmp: Path, port: int, backend: int, workers: str) -> None:
    """The built-in router as a host runs it: a keeper (no agent) with its router generation and
    workers, the route made through the admin API, as the agent makes it."""
    from shipyard.proxy import RouterClient, keeper_status

    state = tmp / "router-state"
    state.mkdir()
    procs.start([PYTHON, "-m", "shipyard.proxy.keeperd", "--state-dir", str(state), "--agent-module", "",
                 "--router-workers", workers], tmp / "router.log")
    deadline = time.monotonic() + 30
    while not any(r["state"] == "active" for r in (keeper_status(state) or {}).get("routers", [])):
        if time.monotonic() > deadline:
            raise SystemExit(f"bench: the router did not start; {(state / 'router.log').read_text()[-2000:]}")
        time.sleep(0.05)

    async def configure() -> None:
        async with RouterClient(state) as client:
            await client.ensure_router("bench", "prod", f"127.0.0.1:{port}")
            await client.set_backends("bench", "prod", [
                {"address": f"127.0.0.1:{backend}", "weight": 100, "revision": "bench", "instance": "nginx-1"}])

    asyncio.run(configure())


def pace(ports: list[int], rate: int, duration: int, conns: int = 32, slice_s: float = 0.1) -> None:
    """Open-loop client at ``rate`` req/s that takes turns between the targets in short time slices.

    Request i is due at t0 + i/rate, whatever the answers do, and goes to the target owning that
    100 ms slice, so each target sees exactly ``rate`` req/s while it is measured and all of them share
    whatever else the machine is doing at the time: the p99 difference is the proxy, not the neighbours.
    Latency is measured from the actual send (timer wake-ups are ~1 ms coarse, which would otherwise
    swamp sub-millisecond differences) unless the send is more than 2 ms behind schedule; then it is
    measured from when it was due, and a request that finds every connection of its target busy is
    counted as ``late``, so a stalling target cannot hide its queueing.
    """
    import httptools
    import uvloop

    latencies: dict[int, list[float]] = {p: [] for p in ports}
    errors = dict.fromkeys(ports, 0)
    late = dict.fromkeys(ports, 0)

    class Conn(asyncio.Protocol):
        def __init__(self, port: int, idle: list[Conn]) -> None:
            self.port = port
            self.idle = idle
            self.transport: asyncio.Transport | None = None
            self.parser = httptools.HttpResponseParser(self)
            self.sent = 0.0
            self.status = 0

        def connection_made(self, transport: asyncio.BaseTransport) -> None:
            self.transport = transport  # type: ignore[assignment]
            self.idle.append(self)

        def send(self, sent: float) -> None:
            self.sent = sent
            self.transport.write(REQUEST)  # type: ignore[union-attr]

        def data_received(self, data: bytes) -> None:
            try:
                self.parser.feed_data(data)
            except httptools.HttpParserError:
                errors[self.port] += 1
                self.transport.close()  # type: ignore[union-attr]

        def on_headers_complete(self) -> None:
            self.status = self.parser.get_status_code()

        def on_message_complete(self) -> None:
            latencies[self.port].append(time.perf_counter() - self.sent)
            if self.status != 200:
                errors[self.port] += 1
            self.idle.append(self)

        def connection_lost(self, exc: Exception | None) -> None:
            if self in self.idle:
                self.idle.remove(self)
            else:
                errors[self.port] += 1

    async def main() -> None:
        loop = asyncio.get_running_loop()
        idle: dict[int, list[Conn]] = {p: [] for p in ports}
        for port in ports:
            for _ in range(conns):
                await loop.create_connection(functools.partial(Conn, port, idle[port]), "127.0.0.1", port)
        interval = 1.0 / rate
        total = rate * duration * len(ports)
        t0 = time.perf_counter() + 0.05
        i = 0
        while i < total:
            now = time.perf_counter()
            while i < total and t0 + i * interval <= now:
                due = t0 + i * interval
                port = ports[int((due - t0) / slice_s) % len(ports)]
                if not idle[port]:
                    late[port] += 1  # every connection busy: send when one frees, timed from due
                    break
                sent = time.perf_counter()
                # Behind schedule by more than timer coarseness (busy connections): time from due.
                idle[port].pop().send(due if sent - due > 0.002 else sent)
                i += 1
            # Sleep until the next request is due: spinning would steal a core from the targets.
            await asyncio.sleep(max(0.0, t0 + i * interval - time.perf_counter()))
        deadline = time.perf_counter() + 10
        while sum(map(len, latencies.values())) + sum(errors.values()) < total and time.perf_counter() < deadline:
            await asyncio.sleep(0.01)

    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    asyncio.run(main())
    out = {}
    for port in ports:
        lat = sorted(latencies[port])
        n = len(lat)
        expected = rate * duration
        out[str(port)] = {
            "p50_ms": round(lat[min(n - 1, int(0.50 * n))] * 1000, 3) if n else -1.0,
            "p99_ms": round(lat[min(n - 1, int(0.99 * n))] * 1000, 3) if n else -1.0,
            "errors": errors[port] + max(0, expected - n - errors[port]),
            "sent": n,
            "late": late[port],
        }
    print(json.dumps(out))


# -- main ---------------------------------------------------------------------------------------
def bench(args: argparse.Namespace) -> dict[str, Any]:
    wrk = ensure_tool("wrk", ["wrk"])
    haproxy = ensure_tool("haproxy", ["haproxy"])
    nginx = ensure_tool("nginx", ["nginx-light", "nginx"])
    procs = Procs()
    results: dict[str, Any] = {}
    rounds: dict[str, list[dict[str, Any]]] = {}
    with tempfile.TemporaryDirectory(prefix="shipyard-bench-") as tmpdir:
        tmp = Path(tmpdir)
        ports = {"nginx": free_port(), "haproxy": free_port(), "builtin": free_port()}
        try:
            user = "user root;" if os.geteuid() == 0 else ""
            (tmp / "nginx.conf").write_text(NGINX_CONF.format(user=user, tmp=tmp, port=ports["nginx"]))
            procs.start([nginx, "-c", str(tmp / "nginx.conf"), "-p", str(tmp)], tmp / "nginx.log")
            wait_http(ports["nginx"], tmp / "nginx.log")
            haproxy_cfg = HAPROXY_CONF.format(
                port=ports["haproxy"], backend=ports["nginx"], threads=args.haproxy_threads
            )
            (tmp / "haproxy.cfg").write_text(haproxy_cfg)
            procs.start([haproxy, "-db", "-f", str(tmp / "haproxy.cfg")], tmp / "haproxy.log")
            wait_http(ports["haproxy"], tmp / "haproxy.log")
            start_router(procs, tmp, ports["builtin"], ports["nginx"], args.router_workers)
            wait_http(ports["builtin"], tmp / "router-state" / "router.log")
            targets = {"direct": ports["nginx"], "haproxy": ports["haproxy"], "builtin": ports["builtin"]}
            # Throughput rounds interleave the targets so a burst of outside load hits all three alike;
            # the best round of each is kept (outside load only ever slows a target down).
            rounds = {name: [] for name in targets}
            for i in range(args.rounds):
                for name, port in targets.items():
                    if not args.json:
                        print(f"round {i + 1}/{args.rounds}: max throughput of {name} ...", file=sys.stderr)
                    rounds[name].append(measure(wrk, port, args))
            if not args.json:
                print(f"latency at {args.rate} req/s, targets in turn ...", file=sys.stderr)
            paced = run_paced(list(targets.values()), args.rate, args.duration)
            for name, port in targets.items():
                lat = paced[str(port)]
                results[name] = {
                    "max_rps": max(r["max_rps"] for r in rounds[name]),
                    "p50_ms": lat["p50_ms"],
                    "p99_ms": lat["p99_ms"],
                    "errors": sum(r["wrk_errors"] for r in rounds[name]) + lat["errors"],
                    "paced_requests": lat["sent"],
                    "paced_late": lat["late"],
                }
        finally:
            procs.stop_all()
    out: dict[str, Any] = {k: results[k] for k in ("builtin", "haproxy", "direct")}
    out["ratio_builtin_haproxy_rps"] = round(results["builtin"]["max_rps"] / results["haproxy"]["max_rps"], 3)
    out["p99_added_ms"] = round(results["builtin"]["p99_ms"] - results["direct"]["p99_ms"], 3)
    out["haproxy_p99_added_ms"] = round(results["haproxy"]["p99_ms"] - results["direct"]["p99_ms"], 3)
    out["settings"] = {"connections": args.connections, "duration_s": args.duration, "rate": args.rate,
                       "rounds": args.rounds, "haproxy_threads": args.haproxy_threads,
                       "router_workers": args.router_workers, "cpus": os.cpu_count()}
    out["throughput_rounds"] = {name: [r["max_rps"] for r in rs] for name, rs in rounds.items()}
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="role")
    p = sub.add_parser("_pace")
    p.add_argument("--ports", required=True, help="comma-separated ports, measured in turn")
    p.add_argument("--rate", type=int, required=True)
    p.add_argument("--duration", type=int, required=True)
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--connections", type=int, default=50, help="wrk connections (default 50)")
    parser.add_argument("--duration", type=int, default=10, help="seconds per measurement (default 10)")
    parser.add_argument("--rate", type=int, default=1000, help="paced requests per second (default 1000)")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved throughput rounds; best is kept")
    parser.add_argument("--haproxy-threads", type=int, default=os.cpu_count() or 1,
                        help="HAProxy nbthread (default: all CPUs, HAProxy's own default)")
    parser.add_argument("--router-workers", default="auto",
                        help="the keeper's --router-workers (default auto: one process per CPU, like HAProxy)")
    args = parser.parse_args()
    if args.role == "_pace":
        pace([int(x) for x in args.ports.split(",")], args.rate, args.duration)
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
