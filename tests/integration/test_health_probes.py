"""Probes and wait_healthy against real things: aiohttp servers on ephemeral ports, a port that refuses
connections, and real /bin/sh processes. Time bounds are generous upper limits, never fixed sleeps."""

from __future__ import annotations

import asyncio
import datetime
import socket
import ssl
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from shipyard.config import ExecCheck, HttpCheck, TcpCheck
from shipyard.health import HealthState, InstancesUnhealthy, Prober, probe, wait_healthy

pytestmark = pytest.mark.timeout(60)


async def _health(request: web.Request) -> web.Response:
    return web.Response(text="ok")


async def _fail(request: web.Request) -> web.Response:
    return web.Response(status=500, text="database   down\n" + "x" * 5000)


async def _slow(request: web.Request) -> web.Response:
    await asyncio.sleep(10)
    return web.Response(text="late")


async def _host(request: web.Request) -> web.Response:
    return web.Response(status=204 if request.host == "api.local" else 421)


async def _redirect(request: web.Request) -> web.Response:
    raise web.HTTPFound("/health")


async def _server() -> tuple[web.AppRunner, str]:
    app = web.Application()
    app.router.add_get("/health", _health)
    app.router.add_get("/fail", _fail)
    app.router.add_get("/slow", _slow)
    app.router.add_get("/host", _host)
    app.router.add_get("/redirect", _redirect)
    runner = web.AppRunner(app, shutdown_timeout=0.1)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    return runner, f"127.0.0.1:{port}"


@pytest.fixture
async def server() -> AsyncIterator[str]:
    runner, address = await _server()
    yield address
    await runner.cleanup()


@pytest.fixture
def closed_address() -> Iterator[str]:
    """A port that is bound but not listening: connections are refused, and nobody else can take it."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    yield f"127.0.0.1:{sock.getsockname()[1]}"
    sock.close()


def http(path: str, **kw: object) -> HttpCheck:
    return HttpCheck(path=path, timeout=kw.pop("timeout", 2), **kw)  # type: ignore[arg-type]


# --- http ---------------------------------------------------------------------------------------------
async def test_http_ok(server: str) -> None:
    result = await probe(http("/health"), server)
    assert result.ok and result.detail == f"GET http://{server}/health -> 200" and 0 <= result.latency < 2


async def test_http_wrong_status_shows_body_snippet(server: str) -> None:
    result = await probe(http("/fail"), server)
    assert not result.ok
    assert result.detail.startswith(f"GET http://{server}/fail -> 500 (expected 200): database down x")
    assert len(result.detail) < 400


async def test_http_expected_status_list_host_header_and_no_redirects(server: str) -> None:
    async with Prober() as prober:
        assert (await prober.probe(http("/host", expected_status=[200, 204], host="api.local"), server)).ok
        assert not (await prober.probe(http("/host", expected_status=[200, 204]), server)).ok
        redirect = await prober.probe(http("/redirect"), server)
        assert not redirect.ok and "-> 302" in redirect.detail


async def test_http_timeout(server: str) -> None:
    started = time.monotonic()
    result = await probe(http("/slow", timeout=0.3), server)
    assert not result.ok and result.detail == f"GET http://{server}/slow: timed out after 0.3s"
    assert time.monotonic() - started < 5


async def test_http_connection_refused(closed_address: str) -> None:
    result = await probe(http("/health"), closed_address)
    assert not result.ok and result.detail == f"GET http://{closed_address}/health: connection refused"


async def test_http_ignores_proxy_environment(server: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HTTP_PROXY", "http://127.0.0.1:9")
    monkeypatch.setenv("http_proxy", "http://127.0.0.1:9")
    assert (await probe(http("/health"), server)).ok


def _self_signed(tmp_path: Path) -> ssl.SSLContext:
    """A server context with a certificate nobody trusts (made here, signed by itself)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(hours=1))
            .not_valid_after(now + datetime.timedelta(hours=1)).sign(key, hashes.SHA256()))
    (tmp_path / "cert.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (tmp_path / "key.pem").write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                                         serialization.PrivateFormat.PKCS8,
                                                         serialization.NoEncryption()))
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(tmp_path / "cert.pem", tmp_path / "key.pem")
    return ctx


async def test_https_probes_verify_certificates_and_http_probes_build_no_tls_context(
        server: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Plain http probes skip the TLS context (loading the CA bundle cost every checker ~50 ms); an https
    address is still verified: a self-signed certificate fails the probe."""
    server_ctx = _self_signed(tmp_path)
    built: list[Any] = []
    real = ssl.create_default_context
    monkeypatch.setattr(ssl, "create_default_context", lambda *a, **kw: built.append(a) or real(*a, **kw))
    app = web.Application()
    app.router.add_get("/health", _health)
    runner = web.AppRunner(app, shutdown_timeout=0.1)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=server_ctx)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        async with Prober() as prober:
            assert (await prober.probe(http("/health"), server)).ok
            assert built == []
            result = await prober.probe(http("/health"), f"https://127.0.0.1:{port}")
        assert not result.ok and "certificate verify failed" in result.detail.lower(), result.detail
        assert len(built) == 1
    finally:
        await runner.cleanup()


# --- tcp ----------------------------------------------------------------------------------------------
async def test_tcp(server: str, closed_address: str) -> None:
    check = TcpCheck(type="tcp", timeout=2)
    assert (await probe(check, server)).ok
    refused = await probe(check, closed_address)
    assert not refused.ok and refused.detail == f"tcp {closed_address}: connection refused"


# --- exec ---------------------------------------------------------------------------------------------
def exec_check(command: str, timeout: float = 5) -> ExecCheck:
    return ExecCheck(type="exec", command=command, timeout=timeout)


async def test_exec_exit_status_and_environment() -> None:
    ok = await probe(exec_check('test "$HEALTH_ADDRESS" = 127.0.0.1:4321 && test "$HEALTH_HOST" = 127.0.0.1 '
                                '&& test "$HEALTH_PORT" = 4321 && echo fine'), "127.0.0.1:4321")
    assert ok.ok and ok.detail == "exec: exit 0: fine"
    bad = await probe(exec_check("echo not ready >&2; exit 3"), "127.0.0.1:1")
    assert not bad.ok and bad.detail == "exec: exit 3: not ready"


async def test_exec_output_is_truncated() -> None:
    result = await probe(exec_check("head -c 200000 /dev/zero | tr '\\0' a; exit 1"), "127.0.0.1:1")
    assert not result.ok and result.detail.startswith("exec: exit 1: aaa") and len(result.detail) < 400


def _gone(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return True
    return state in ("Z", "X")


async def _wait_gone(pids: list[int], within: float = 10) -> bool:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if all(_gone(pid) for pid in pids):
            return True
        await asyncio.sleep(0.05)
    return False


async def test_exec_timeout_kills_the_process_group(tmp_path: Path) -> None:
    pids = tmp_path / "pids"
    started = time.monotonic()
    result = await probe(exec_check(f"echo $$ > {pids}; sleep 30 & echo $! >> {pids}; wait", timeout=0.5),
                         "127.0.0.1:1")
    assert not result.ok and result.detail == "exec timed out after 0.5s (killed)"
    assert time.monotonic() - started < 5
    assert await _wait_gone([int(pid) for pid in pids.read_text().split()])


async def test_exec_background_child_does_not_hold_the_probe(tmp_path: Path) -> None:
    pids = tmp_path / "pids"
    started = time.monotonic()
    result = await probe(exec_check(f"sleep 30 & echo $! > {pids}; echo up", timeout=10), "127.0.0.1:1")
    assert result.ok and result.detail == "exec: exit 0: up"
    assert time.monotonic() - started < 5
    assert await _wait_gone([int(pids.read_text())])


async def test_exec_cancelled_probe_kills_its_process(tmp_path: Path) -> None:
    pids = tmp_path / "pids"
    task = asyncio.create_task(probe(exec_check(f"echo $$ > {pids}; exec sleep 30", timeout=30), "127.0.0.1:1"))
    deadline = time.monotonic() + 10
    while not (pids.exists() and pids.read_text().strip()) and time.monotonic() < deadline:
        await asyncio.sleep(0.02)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert await _wait_gone([int(pids.read_text())])


# --- wait_healthy against real servers ----------------------------------------------------------------
async def test_wait_healthy_real_servers() -> None:
    (one, a), (two, b) = await _server(), await _server()
    try:
        check = http("/health", interval=0.05, timeout=2, start_period=0)
        states = await wait_healthy(check, [a, b], deadline=20)
        assert states == {a: HealthState.HEALTHY, b: HealthState.HEALTHY}
    finally:
        await one.cleanup()
        await two.cleanup()


async def test_wait_healthy_names_the_failing_address(server: str) -> None:
    check = http("/fail", interval=0.05, timeout=2, start_period=0)
    with pytest.raises(InstancesUnhealthy) as info:
        await wait_healthy(check, [server], deadline=20)
    assert str(info.value).startswith(f"1 of 1 instance(s) unhealthy: {server} (unhealthy: GET http://{server}/fail"
                                      " -> 500 (expected 200): database down")


async def test_wait_healthy_deadline_with_refusing_port(server: str, closed_address: str) -> None:
    check = http("/health", interval=0.05, timeout=1, start_period=60)
    started = time.monotonic()
    with pytest.raises(InstancesUnhealthy) as info:
        await wait_healthy(check, [server, closed_address], deadline=0.5)
    assert time.monotonic() - started < 10
    message = str(info.value)
    assert message.startswith("not healthy within 0.5s: ") and closed_address in message
    assert "connection refused" in message and f"{server} (" not in message
    assert info.value.states[server] is HealthState.HEALTHY


async def test_wait_healthy_sees_a_server_that_comes_up_late() -> None:
    sock = socket.socket()                       # bound now, listening only later: refused until then
    sock.bind(("127.0.0.1", 0))
    address = f"127.0.0.1:{sock.getsockname()[1]}"

    async def start_later() -> web.AppRunner:
        await asyncio.sleep(0.3)
        app = web.Application()
        app.router.add_get("/health", _health)
        runner = web.AppRunner(app, shutdown_timeout=0.1)
        await runner.setup()
        await web.SockSite(runner, sock).start()
        return runner

    task = asyncio.create_task(start_later())
    try:
        check = http("/health", interval=0.05, timeout=1, start_period=30)
        states = await wait_healthy(check, [address], deadline=20)
        assert states == {address: HealthState.HEALTHY}
    finally:
        await (await task).cleanup()
        sock.close()
