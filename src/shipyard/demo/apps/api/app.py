"""Demo API service that shipyard deploys in `shipyard demo` and in integration tests.

It is deliberately small but behaves like a real backend in the ways a deployment tool cares about:
it tells which revision and instance answered (so tests can watch traffic shift), it can be made
unhealthy by the commit itself (a `FAIL_HEALTH` file) or by the environment, it can be made to
return a share of 5xx at runtime (to trip alarms without a redeploy), it holds long requests and
websockets (to exercise draining), and it shuts down gracefully on SIGTERM.

Run: `PORT=8001 python app.py` (binds 127.0.0.1; PORT=0 picks a free port, printed in the start line).
Env: HEALTH_FAIL=1, ERROR_RATE=0..1, SHIPYARD_REVISION, SHIPYARD_INSTANCE, SHUTDOWN_TIMEOUT (s, default 30).
Only the standard library and aiohttp are imported: the file is copied into demo git repos and run
with the interpreter that runs shipyard.
"""

from __future__ import annotations

import asyncio
import os
import socket
import sys
from pathlib import Path

from aiohttp import WSCloseCode, WSMsgType, web


class State:
    """Runtime knobs and bookkeeping shared by the handlers of one process."""

    def __init__(self, version: str, error_rate: float) -> None:
        self.version = version
        self.error_rate = error_rate
        # Deterministic error share: a credit accumulator fails exactly `rate` of requests over time,
        # so alarm tests see a stable ratio instead of random noise.
        self._credit = 0.0
        self.websockets: set[web.WebSocketResponse] = set()
        self.slow_in_flight = 0  # lets drain tests know a long request is really being served

    def should_fail(self) -> bool:
        """Decide whether this request answers 500 under the current error rate."""
        if self.error_rate <= 0:
            return False
        self._credit += self.error_rate
        if self._credit >= 1.0 - 1e-9:
            self._credit -= 1.0
            return True
        return False


STATE: web.AppKey[State] = web.AppKey("state", State)


def _read_version() -> str:
    try:
        return Path("VERSION").read_text(encoding="utf-8").strip() or "unknown"
    except OSError:
        return "unknown"


def _parse_rate(raw: str) -> float:
    rate = float(raw)
    if not 0.0 <= rate <= 1.0:
        raise ValueError(f"error rate must be between 0 and 1, got {rate}")
    return rate


def _identity(state: State) -> dict[str, object]:
    return {
        "version": state.version,
        "revision": os.environ.get("SHIPYARD_REVISION", ""),
        "instance": os.environ.get("SHIPYARD_INSTANCE", ""),
        "pid": os.getpid(),
    }


async def health(request: web.Request) -> web.Response:
    # The file is checked on every probe so a test can flip health of a running instance.
    if os.environ.get("HEALTH_FAIL") == "1" or os.path.exists("FAIL_HEALTH"):
        return web.Response(status=500, text="unhealthy")
    return web.Response(text="ok")


async def version(request: web.Request) -> web.Response:
    state = request.app[STATE]
    if state.should_fail():
        return web.json_response({"error": "injected failure"}, status=500)
    return web.json_response(_identity(state))


async def index(request: web.Request) -> web.Response:
    state = request.app[STATE]
    if state.should_fail():
        return web.json_response({"error": "injected failure"}, status=500)
    return web.json_response({"service": "api", "version": state.version})


async def slow(request: web.Request) -> web.Response:
    try:
        ms = float(request.query.get("ms", "1000"))
    except ValueError:
        return web.Response(status=400, text="ms must be a number")
    state = request.app[STATE]
    state.slow_in_flight += 1
    try:
        await asyncio.sleep(max(0.0, min(ms, 600_000.0)) / 1000.0)
    finally:
        state.slow_in_flight -= 1
    return web.json_response({"slept_ms": ms, **_identity(state)})


async def websocket(request: web.Request) -> web.WebSocketResponse:
    state = request.app[STATE]
    ws = web.WebSocketResponse(heartbeat=None)
    await ws.prepare(request)
    state.websockets.add(ws)
    try:
        async for msg in ws:
            if msg.type == WSMsgType.TEXT:
                await ws.send_str(msg.data)
            elif msg.type == WSMsgType.BINARY:
                await ws.send_bytes(msg.data)
    finally:
        state.websockets.discard(ws)
    return ws


async def set_error_rate(request: web.Request) -> web.Response:
    state = request.app[STATE]
    try:
        state.error_rate = _parse_rate((await request.text()).strip())
    except ValueError as exc:
        return web.Response(status=400, text=str(exc))
    return web.json_response({"error_rate": state.error_rate})


async def get_error_rate(request: web.Request) -> web.Response:
    return web.json_response({"error_rate": request.app[STATE].error_rate})


async def stats(request: web.Request) -> web.Response:
    state = request.app[STATE]
    return web.json_response(
        {"slow_in_flight": state.slow_in_flight, "websockets": len(state.websockets), **_identity(state)}
    )


async def _close_websockets(app: web.Application) -> None:
    # Runs after the listener stopped: tell websocket clients to reconnect elsewhere (1001 going away)
    # instead of letting them hold the shutdown until its timeout.
    for ws in list(app[STATE].websockets):
        await ws.close(code=WSCloseCode.GOING_AWAY, message=b"server shutting down")


def make_app(error_rate: float = 0.0) -> web.Application:
    """Build the application; separate from main() so it can be served in-process."""
    app = web.Application()
    app[STATE] = State(_read_version(), error_rate)
    app.router.add_get("/health", health)
    app.router.add_get("/version", version)
    app.router.add_get("/", index)
    app.router.add_get("/slow", slow)
    app.router.add_get("/ws", websocket)
    app.router.add_post("/admin/error-rate", set_error_rate)
    app.router.add_get("/admin/error-rate", get_error_rate)
    app.router.add_get("/admin/stats", stats)
    app.on_shutdown.append(_close_websockets)
    return app


def main() -> int:
    try:
        port = int(os.environ.get("PORT", "8000"))
        error_rate = _parse_rate(os.environ.get("ERROR_RATE", "0") or "0")
        shutdown_timeout = float(os.environ.get("SHUTDOWN_TIMEOUT", "30"))
    except ValueError as exc:
        print(f"api: bad environment: {exc}", file=sys.stderr)
        return 2
    # Bind ourselves so PORT=0 works and the start line names the real port.
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind(("127.0.0.1", port))
    except OSError as exc:
        print(f"api: cannot bind 127.0.0.1:{port}: {exc}", file=sys.stderr)
        return 1
    app = make_app(error_rate)
    ident = _identity(app[STATE])
    print(
        f"api starting version={ident['version']} revision={ident['revision'] or '-'} "
        f"instance={ident['instance'] or '-'} pid={ident['pid']} "
        f"listening=127.0.0.1:{sock.getsockname()[1]}" + (f" error_rate={error_rate}" if error_rate else ""),
        flush=True,
    )
    loop = None
    try:
        import uvloop

        loop = uvloop.new_event_loop()
    except ImportError:
        pass
    web.run_app(
        app,
        sock=sock,
        shutdown_timeout=shutdown_timeout,
        keepalive_timeout=75.0,
        print=None,
        access_log=None,
        loop=loop,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
