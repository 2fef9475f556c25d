"""The built-in router and HAProxy, row by row, in front of the same scripted backend.

Every row sends the same bytes through both proxies and compares what came out: status, the headers that
matter, body, whether the response ended properly, whether the client connection stays usable, what the
backend received and how often. HAProxy is configured to the router's documented policy (proxy_compare.py),
so a row that differs is a router defect, except the few rows marked ``haproxy_differs`` where HAProxy 2.6
is the one that departs from RFC 9110/9112 (each says why); there the router is held to ``expect``.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

try:  # works whether or not tests/ is a package
    from .proxy_compare import TRUSTED, Client, Front, free_port, haproxy_front, raw_request, router_front, view
    from .scripted_backend import ScriptedBackend, ws_decode, ws_frame
except ImportError:
    from proxy_compare import TRUSTED, Client, Front, free_port, haproxy_front, raw_request, router_front, view
    from scripted_backend import ScriptedBackend, ws_decode, ws_frame

pytestmark = [pytest.mark.haproxy, pytest.mark.timeout(60)]

RowFn = Callable[[Front, str], Awaitable[dict[str, Any]]]


@dataclass
class Row:
    fn: RowFn
    expect: dict[str, Any] | None  # what the router must show (keys compared); None: only "same as HAProxy"
    haproxy_differs: str | None  # why HAProxy is not the reference for this row


ROWS: dict[str, Row] = {}


def row(expect: dict[str, Any] | None = None, haproxy_differs: str | None = None) -> Callable[[RowFn], RowFn]:
    def register(fn: RowFn) -> RowFn:
        ROWS[fn.__name__] = Row(fn, expect, haproxy_differs)
        return fn

    return register


def received(f: Front, path: str) -> dict[str, Any]:
    """How often the backend got the request and whether the last copy arrived whole."""
    seen = f.backend.requests(path)
    return {"received": len(seen), "received_complete": bool(seen) and seen[-1].complete}


async def one(f: Front, row_name: str, kind: str, method: str = "GET", *headers: str, body: bytes = b"",
              names: tuple[str, ...] = (), front: str = "main") -> dict[str, Any]:
    """One request on a fresh connection: the response, the backend's view, and a follow-up request."""
    client = await Client.connect(getattr(f, front))
    path = f.path(kind, row_name)
    try:
        resp = await client.request(method, path, *headers, body=body)
        out = view(resp, *names) | received(f, path)
        out["usable_after"] = await client.still_usable(f, row_name) if resp is not None else False
    finally:
        await client.close()
    return out


# -- well-formed traffic ---------------------------------------------------------------------------
@row(expect={"status": 200, "complete": True, "usable_after": True, "received": 1, "connection": None})
async def get_ok(f: Front, r: str) -> dict[str, Any]:
    return await one(f, r, "ok", names=("connection",))


@row(expect={"status": 200, "body": b"", "usable_after": True, "length_announced": True})
async def head(f: Front, r: str) -> dict[str, Any]:
    out = await one(f, r, "ok", "HEAD", names=("content-length",))
    out["length_announced"] = out.pop("content-length") is not None
    return out


@row(expect={"status": 204, "body": b"", "usable_after": True})
async def no_content(f: Front, r: str) -> dict[str, Any]:
    return await one(f, r, "nocontent")


@row(expect={"status": 304, "body": b"", "usable_after": True})
async def not_modified(f: Front, r: str) -> dict[str, Any]:
    return await one(f, r, "notmodified", "GET", "If-None-Match: \"x\"", names=("etag",))


@row(expect={"status": 200, "body": b"chunked", "complete": True, "usable_after": True})
async def chunked_response(f: Front, r: str) -> dict[str, Any]:
    return await one(f, r, "chunked")


@row(expect={"status": 200, "body": b"abcde", "complete": True, "usable_after": True})
async def chunked_with_trailers(f: Front, r: str) -> dict[str, Any]:
    return await one(f, r, "trailers")


@row(expect={"status": 200, "received": 1, "received_complete": True, "body_seen": b"hello world"})
async def chunked_request(f: Front, r: str) -> dict[str, Any]:
    out = await one(f, r, "ok", "POST", "Transfer-Encoding: chunked", body=b"5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n")
    out["body_seen"] = f.backend.requests(f.path("ok", r))[-1].body
    return out


@row(expect={"statuses": [200, 200, 200], "bodies_in_order": True})
async def pipelined(f: Front, r: str) -> dict[str, Any]:
    client = await Client.connect(f.main)
    paths = [f.path("ok", f"{r}{i}") for i in range(3)]
    client.send(b"".join(raw_request("GET", p) for p in paths))
    resps = [await client.response() for _ in paths]
    await client.close()
    return {"statuses": [x.status if x else None for x in resps],
            "bodies_in_order": [x.body if x else b"" for x in resps] == [f"ok {p}".encode() for p in paths]}


@row(expect={"status": 200, "body": b"", "usable_after": True, "transfer-encoding": "chunked"})
async def head_of_a_chunked_resource(f: Front, r: str) -> dict[str, Any]:
    return await one(f, r, "chunked", "HEAD", names=("transfer-encoding",))


@row(expect={"interim": 100, "status": 200, "body": b"got 4", "received": 1})
async def expect_continue(f: Front, r: str) -> dict[str, Any]:
    client = await Client.connect(f.main)
    path = f.path("continue", r)
    client.send(raw_request("POST", path, "Expect: 100-continue", "Content-Length: 4"))
    interim = await client.response()
    client.send(b"data")
    final = await client.response()
    await client.close()
    return {"interim": interim.status if interim else None} | view(final) | received(f, path)


@row(expect={"status": 101, "echo": (1, b"hello"), "close_reply": (8, b"\x03\xe8")})
async def websocket(f: Front, r: str) -> dict[str, Any]:
    client = await Client.connect(f.main)
    resp = await client.request("GET", f.path("ws", r), "Upgrade: websocket", "Connection: Upgrade",
                                "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==", "Sec-WebSocket-Version: 13")
    frames: list[tuple[int, bytes]] = []

    async def next_frame() -> tuple[int, bytes]:
        while (frame := ws_decode(client.buffer)) is None:
            data = await asyncio.wait_for(client.reader.read(65536), 5)
            if not data:
                raise ConnectionError("closed")
            client.buffer += data
        client.buffer = client.buffer[frame[2] :]
        return frame[0], frame[1]

    client.send(ws_frame(1, b"hello", mask=b"abcd"))
    frames.append(await next_frame())
    client.send(ws_frame(8, b"\x03\xe8", mask=b"wxyz"))
    frames.append(await next_frame())
    closed = await client.closed()
    await client.close()
    return {"status": resp.status if resp else None, "echo": frames[0], "close_reply": frames[1], "closed": closed}


# -- the backend dies or misbehaves -------------------------------------------------------------------
@row(expect={"status": 502, "received": 1})
async def post_backend_dies_after_reading(f: Front, r: str) -> dict[str, Any]:
    return await one(f, r, "close", "POST", body=b"pay me once")


@row(expect={"status": None, "received": 1})
async def post_on_reused_connection_backend_dies(f: Front, r: str) -> dict[str, Any]:
    client = await Client.connect(f.main)
    first = await client.request("GET", f.path("ok", r))
    path = f.path("close", r)
    second = await client.request("POST", path, body=b"pay me once")
    await client.close()
    return {"first": first.status if first else None} | view(second) | received(f, path)


@row(expect={"status": 200, "received": 2, "usable_after": True})
async def get_backend_dies_once(f: Front, r: str) -> dict[str, Any]:
    return await one(f, r, "close-once")


@row(expect={"status": 502, "received": 4})
async def get_backend_always_dies(f: Front, r: str) -> dict[str, Any]:
    return await one(f, r, "close")


@row(expect={"status": 200, "received": 1})
async def post_retried_when_connect_fails(f: Front, r: str) -> dict[str, Any]:
    return await one(f, r, "ok", "POST", body=b"x", front="retry")


@row(expect={"status": 502, "received": 1})
async def not_http(f: Front, r: str) -> dict[str, Any]:
    return await one(f, r, "nothttp")


@row(expect={"status": 502, "received": 1})
async def conflicting_content_length(f: Front, r: str) -> dict[str, Any]:
    return await one(f, r, "dupcl")


@row(expect={"status": 502, "received": 1})
async def bad_chunk(f: Front, r: str) -> dict[str, Any]:
    return await one(f, r, "badchunk")


@row(expect={"status": 200, "complete": False, "usable_after": False})
async def bad_chunk_after_head_went_out(f: Front, r: str) -> dict[str, Any]:
    client = await Client.connect(f.main)
    path = f.path("badchunk-late", r)
    client.send(raw_request("GET", path))
    head = await client.response(head=True)
    f.backend.gate(path).set()
    closed = await client.closed()
    await client.close()
    return {"status": head.status if head else None, "complete": False, "usable_after": not closed}


@row(expect={"status": 200, "body": b"exact", "complete": True, "usable_after": True})
async def junk_after_response(f: Front, r: str) -> dict[str, Any]:
    return await one(f, r, "junkafter")


@row(expect={"status": 200, "body": b"exact", "complete": True, "usable_after": True, "x-junk": None,
             "followup_on_new_connection": True})
async def partial_head_after_response(f: Front, r: str) -> dict[str, Any]:
    out = await one(f, r, "junkhead", names=("x-junk",))
    first, followup = f.backend.requests(f.path("junkhead", r)), f.backend.requests(f.path("ok", r + "-followup"))
    out["followup_on_new_connection"] = bool(first and followup) and first[0].conn != followup[0].conn
    return out


# -- connection management and hop-by-hop headers -----------------------------------------------------
@row(expect={"status": 200, "body": b"closing", "connection": None, "usable_after": True})
async def backend_closes_its_side(f: Front, r: str) -> dict[str, Any]:
    return await one(f, r, "connclose", names=("connection",))


CLOSE_DELIMITED = ("HAProxy 2.6 forwards a body delimited by the backend closing as it is and closes the "
                   "client connection; the router re-frames it as chunked (RFC 9112 7.1), so the client "
                   "connection survives")


@row(expect={"status": 200, "body": b"until eof", "complete": True, "usable_after": True},
     haproxy_differs=CLOSE_DELIMITED)
async def response_delimited_by_close(f: Front, r: str) -> dict[str, Any]:
    return await one(f, r, "eof")


@row(expect={"status": 200, "body": b"old style", "complete": True, "usable_after": True},
     haproxy_differs=CLOSE_DELIMITED)
async def http10_backend(f: Front, r: str) -> dict[str, Any]:
    return await one(f, r, "http10")


@row(expect={"status": 200, "connection": "close", "closed": True})
async def client_asks_to_close(f: Front, r: str) -> dict[str, Any]:
    client = await Client.connect(f.main)
    resp = await client.request("GET", f.path("ok", r), "Connection: close")
    out = view(resp, "connection") | {"closed": await client.closed()}
    await client.close()
    return out


@row(expect={"status": 200, "closed": True})
async def http10_client(f: Front, r: str) -> dict[str, Any]:
    client = await Client.connect(f.main)
    resp = await client.request("GET", f.path("ok", r), version="1.0")
    out = view(resp) | {"closed": await client.closed()}
    await client.close()
    return out


@row(expect={"status": 200, "version_seen": "1.0", "host_seen": None, "connection_seen": "keep-alive"})
async def http10_request_without_host(f: Front, r: str) -> dict[str, Any]:
    client = await Client.connect(f.main)
    client.send(f"GET {f.path('ok', r)} HTTP/1.0\r\n\r\n".encode())
    resp = await client.response()
    await client.close()
    seen = f.backend.requests(f.path("ok", r))[-1]
    return {"status": resp.status if resp else None, "version_seen": seen.version, "host_seen": seen.header("host"),
            "connection_seen": seen.header("connection")}


@row(expect={"status": 200, "body": b"chunked", "complete": True, "transfer-encoding": None, "closed": True},
     haproxy_differs="HAProxy 2.6 sends an HTTP/1.0 client a chunked body, which RFC 9112 6.1 forbids; the router "
                     "sends it as is and ends it by closing the connection")
async def http10_client_chunked_backend(f: Front, r: str) -> dict[str, Any]:
    client = await Client.connect(f.main)
    resp = await client.request("GET", f.path("chunked", r), "Connection: keep-alive", version="1.0")
    out = view(resp, "transfer-encoding") | {"closed": await client.closed()}
    await client.close()
    return out


@row(expect={"statuses": [502, 200], "closed_between": False})
async def error_then_next_request(f: Front, r: str) -> dict[str, Any]:
    client = await Client.connect(f.main)
    client.send(raw_request("GET", f.path("nothttp", r)) + raw_request("GET", f.path("ok", r)))
    first, second = await client.response(), await client.response()
    await client.close()
    return {"statuses": [x.status if x else None for x in (first, second)], "closed_between": second is None}


@row(expect={"status": 200, "connection": "keep-alive", "second": 200})
async def http10_keep_alive_client(f: Front, r: str) -> dict[str, Any]:
    client = await Client.connect(f.main)
    resp = await client.request("GET", f.path("ok", r), "Connection: keep-alive", version="1.0")
    again = await client.request("GET", f.path("ok", r + "b"), "Connection: keep-alive", version="1.0")
    await client.close()
    return view(resp, "connection") | {"second": again.status if again else None}


HOP_BY_HOP = ("HAProxy 2.6 acts on Connection's close/keep-alive tokens only: it forwards Keep-Alive, "
              "Proxy-Connection and the headers other tokens name, which RFC 9110 7.6.1 says to remove")


@row(expect={"x-hop-req": None, "keep-alive": None, "proxy-connection": None, "x-end": "kept"},
     haproxy_differs=HOP_BY_HOP)
async def hop_by_hop_request_headers(f: Front, r: str) -> dict[str, Any]:
    out = await one(f, r, "ok", "GET", "Connection: X-Hop-Req", "X-Hop-Req: secret", "Keep-Alive: timeout=9",
                    "Proxy-Connection: keep-alive", "X-End: kept")
    seen = f.backend.requests(f.path("ok", r))[-1]
    return {k: seen.header(k) for k in ("x-hop-req", "keep-alive", "proxy-connection", "x-end")} | out


@row(expect={"x-hop-resp": None, "keep-alive": None, "x-end": "kept", "usable_after": True},
     haproxy_differs=HOP_BY_HOP)
async def hop_by_hop_response_headers(f: Front, r: str) -> dict[str, Any]:
    return await one(f, r, "hop", names=("x-hop-resp", "keep-alive", "x-end", "connection"))


# -- the front door: forwarding headers -----------------------------------------------------------------
FORWARDING = ("x-forwarded-for", "x-forwarded-proto", "x-forwarded-host", "forwarded", "x-real-ip")
SPOOFED = ("X-Forwarded-For: 6.6.6.6", "X-Forwarded-For: 7.7.7.7", "X-Forwarded-Proto: https",
           "X-Forwarded-Host: evil.example", "Forwarded: for=6.6.6.6", "X-Real-IP: 6.6.6.6")


async def forwarded_view(f: Front, r: str, source: str, *headers: str) -> dict[str, Any]:
    client = await Client.connect(f.main, source=source)
    path = f.path("ok", r)
    resp = await client.request("GET", path, *headers)
    await client.close()
    seen = f.backend.requests(path)[-1]
    return {"status": resp.status if resp else None} | {k: seen.header(k) for k in FORWARDING}


@row(expect={"x-forwarded-for": "127.0.0.1", "x-forwarded-proto": "http", "x-forwarded-host": "test.local",
             "forwarded": None, "x-real-ip": None})
async def forwarding_headers_from_a_client_are_replaced(f: Front, r: str) -> dict[str, Any]:
    return await forwarded_view(f, r, "127.0.0.1", *SPOOFED)


@row(expect={"x-forwarded-for": "6.6.6.6, 7.7.7.7, 127.0.0.2", "x-forwarded-proto": "https",
             "x-forwarded-host": "evil.example", "forwarded": "for=6.6.6.6"})
async def forwarding_headers_from_a_trusted_proxy_are_extended(f: Front, r: str) -> dict[str, Any]:
    return await forwarded_view(f, r, TRUSTED, *SPOOFED)


@row(expect={"x-forwarded-for": "127.0.0.2", "x-forwarded-proto": "http", "x-forwarded-host": "test.local"})
async def forwarding_headers_set_for_a_trusted_proxy_that_sent_none(f: Front, r: str) -> dict[str, Any]:
    return await forwarded_view(f, r, TRUSTED)


# -- bad requests -----------------------------------------------------------------------------------
@row(expect={"status": 400, "closed": True})
async def garbage_request(f: Front, r: str) -> dict[str, Any]:
    client = await Client.connect(f.main)
    client.send(b"THIS IS NOT HTTP\r\n\r\n")
    resp = await client.response()
    out = {"status": resp.status if resp else None, "closed": await client.closed()}
    await client.close()
    return out


@row(expect={"status": 400, "received": 0})
async def conflicting_request_content_length(f: Front, r: str) -> dict[str, Any]:
    return await one(f, r, "ok", "POST", "Content-Length: 3", "Content-Length: 4", body=b"abcd")


@row(expect={"status": 400, "received": 0, "usable_after": False},
     haproxy_differs="HAProxy forwards a request with both Content-Length and Transfer-Encoding (chunked "
                     "wins) and closes afterwards; RFC 9112 6.3 allows both, the router refuses it (400), "
                     "the stricter answer to request smuggling")
async def request_with_length_and_chunked(f: Front, r: str) -> dict[str, Any]:
    return await one(f, r, "ok", "POST", "Content-Length: 3", "Transfer-Encoding: chunked",
                     body=b"5\r\nhello\r\n0\r\n\r\n")


@row(expect={"status": 400, "received": 0},
     haproxy_differs="HAProxy 2.6 forwards an HTTP/1.1 request without Host; RFC 9112 3.2 requires a 400")
async def http11_request_without_host(f: Front, r: str) -> dict[str, Any]:
    client = await Client.connect(f.main)
    client.send(f"GET {f.path('ok', r)} HTTP/1.1\r\n\r\n".encode())
    resp = await client.response()
    await client.close()
    return view(resp) | received(f, f.path("ok", r))


@row(expect={"status": 400, "received": 0})
async def two_host_headers(f: Front, r: str) -> dict[str, Any]:
    return await one(f, r, "ok", "GET", "Host: other.example")


@row(expect={"status": 200, "usable_after": True, "received": 1})
async def upgrade_refused_by_backend(f: Front, r: str) -> dict[str, Any]:
    return await one(f, r, "ok", "GET", "Upgrade: websocket", "Connection: Upgrade",
                     "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==", "Sec-WebSocket-Version: 13")


@row(expect={"status": 200, "body": b"hello", "content-length": None, "transfer-encoding": "chunked",
             "usable_after": True})
async def response_with_length_and_chunked(f: Front, r: str) -> dict[str, Any]:
    return await one(f, r, "clte", names=("content-length", "transfer-encoding"))


# -- the client goes away -----------------------------------------------------------------------------
async def client_leaves_mid_body(f: Front, r: str, how: str) -> dict[str, Any]:
    client = await Client.connect(f.main)
    path = f.path("body-wait", r)
    client.send(raw_request("POST", path, "Content-Length: 100") + b"only ten..")
    await wait_for(lambda: f.backend.count(path) == 1, "the request head to reach the backend")
    conn = f.backend.conns[f.backend.requests(path)[-1].conn]
    if how == "fin":
        client.shutdown_write()
    else:
        client.reset()
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(conn.closed.wait(), 5)
    await client.close()
    return {"backend_connection_closed": conn.closed.is_set(), "received": f.backend.count(path)}


@row(expect={"backend_connection_closed": True, "received": 1})
async def client_half_closes_mid_body(f: Front, r: str) -> dict[str, Any]:
    return await client_leaves_mid_body(f, r, "fin")


@row(expect={"backend_connection_closed": True, "received": 1})
async def client_resets_mid_body(f: Front, r: str) -> dict[str, Any]:
    return await client_leaves_mid_body(f, r, "rst")


@row(expect={"status": 200, "received": 1})
async def client_half_closes_after_whole_request(f: Front, r: str) -> dict[str, Any]:
    client = await Client.connect(f.main)
    path = f.path("ok", r)
    client.send(raw_request("GET", path, "Connection: close"))
    client.shutdown_write()
    resp = await client.response()
    await client.close()
    return view(resp) | received(f, path)


# -- timeouts (the ``fast`` fronts: every timeout 1 s) -----------------------------------------------------
@row(expect={"status": 504, "received": 1})
async def response_timeout(f: Front, r: str) -> dict[str, Any]:
    return await one(f, r, "hang", front="fast")


@row(expect={"status": 408, "closed": True})
async def request_head_timeout(f: Front, r: str) -> dict[str, Any]:
    client = await Client.connect(f.fast)
    client.send(b"GET /ok/slow HTTP/1.1\r\nHost: test.local\r\nX-Slow: ")
    resp = await client.response()
    out = {"status": resp.status if resp else None, "closed": await client.closed()}
    await client.close()
    return out


@row(expect={"status": 408, "closed": True, "backend_connection_closed": True},
     haproxy_differs="HAProxy 2.6 runs its server timeout while the request body is still arriving and "
                     "blames the backend (504); the client stalled, so the router answers 408 (RFC 9110 15.5.9)")
async def request_body_timeout(f: Front, r: str) -> dict[str, Any]:
    client = await Client.connect(f.fast)
    path = f.path("body-wait", r)
    client.send(raw_request("POST", path, "Content-Length: 100") + b"only ten..")
    resp = await client.response()
    out = {"status": resp.status if resp else None, "closed": await client.closed()}
    seen = f.backend.requests(path)
    conn = f.backend.conns[seen[-1].conn] if seen else None
    if conn is not None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(conn.closed.wait(), 5)
    out["backend_connection_closed"] = conn is not None and conn.closed.is_set()
    await client.close()
    return out


@row(expect={"status": 200, "closed": True})
async def idle_keep_alive_timeout(f: Front, r: str) -> dict[str, Any]:
    client = await Client.connect(f.fast)
    resp = await client.request("GET", f.path("ok", r))
    out = {"status": resp.status if resp else None, "closed": await client.closed(timeout=5)}
    await client.close()
    return out


async def wait_for(check: Callable[[], bool], what: str, timeout: float = 5.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not check():
        if loop.time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.01)


@pytest.fixture
async def fronts(tmp_path: Path) -> AsyncIterator[tuple[Front, Front]]:
    backend = await ScriptedBackend().start()
    dead = free_port()  # nothing listens there: connection refused
    try:
        async with router_front(backend, dead) as router, haproxy_front(tmp_path, backend, dead) as haproxy:
            yield router, haproxy
    finally:
        await backend.stop()


def neutral(out: dict[str, Any], front: Front) -> dict[str, Any]:
    """Bodies echo the request path, which names the proxy: take the name out before comparing."""
    tag = f"-{front.name}"
    return {k: v.replace(tag.encode(), b"") if isinstance(v, bytes) else v for k, v in out.items()}


@pytest.mark.parametrize("name", list(ROWS))
async def test_router_matches_haproxy(name: str, fronts: tuple[Front, Front]) -> None:
    router, haproxy = fronts
    spec = ROWS[name]
    ref = neutral(await spec.fn(haproxy, name), haproxy)
    got = neutral(await spec.fn(router, name), router)
    if spec.expect is not None:
        assert {k: got.get(k) for k in spec.expect} == spec.expect, f"router: {got}\nhaproxy: {ref}"
    if spec.haproxy_differs is None:
        assert got == ref, f"router differs from haproxy in row {name}:\nrouter:  {got}\nhaproxy: {ref}"
        if spec.expect is not None:  # the reference agrees with what the row demands
            assert {k: ref.get(k) for k in spec.expect} == spec.expect, f"haproxy: {ref}"

