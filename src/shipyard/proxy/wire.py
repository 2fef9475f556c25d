"""HTTP/1.1 bytes the router writes itself, and the header rules both directions share (no I/O, no state).

RFC 9110 7.6.1: Connection, Keep-Alive, Proxy-Connection, TE, Transfer-Encoding and Upgrade describe one
hop, and so does every header a Connection header names; a proxy removes them and writes its own. The
router re-frames every message it forwards (it writes Content-Length or chunked framing itself), so the
framing headers are decided here, never copied.
"""

from __future__ import annotations

# RFC 9110 9.2.2: a request with one of these methods may be sent again after a failure.
IDEMPOTENT = frozenset({b"GET", b"HEAD", b"OPTIONS", b"TRACE", b"PUT", b"DELETE"})
# Tokens of a Connection header that are options, not header names.
CONNECTION_OPTIONS = frozenset({b"close", b"keep-alive", b"upgrade"})
# Never removed because a Connection header names them: that would change the message's framing or
# target, which is how "hop-by-hop header" smuggling works.
PROTECTED = frozenset({b"host", b"content-length", b"transfer-encoding"})

REASONS = {
    400: b"Bad Request",
    408: b"Request Timeout",
    502: b"Bad Gateway",
    503: b"Service Unavailable",
    504: b"Gateway Timeout",
}
# How a response body goes to the client.
NONE, LENGTH, CHUNKED, CLOSE = 0, 1, 2, 3
# Proxy-generated errors after which the client connection may stay open (the request was read whole):
# the backend failed, not the conversation with the client.
KEEP_ALIVE_ERRORS = frozenset({502, 503, 504})


def error_response(status: int, close: bool = True, http11: bool = True, head: bool = False) -> bytes:
    """A small proxy-generated response; ``close`` adds Connection: close (the router then closes)."""
    reason = REASONS[status]
    body = b"%d %s\n" % (status, reason)
    conn = b"Connection: close\r\n" if close else b"" if http11 else b"Connection: keep-alive\r\n"
    return b"HTTP/1.1 %d %s\r\nContent-Type: text/plain\r\nContent-Length: %d\r\n%s\r\n%s" % (
        status, reason, len(body), conn, b"" if head else body)


def connection_tokens(values: list[bytes]) -> set[bytes]:
    """Lower-cased tokens of every Connection header value ("close, X-Foo" -> {b"close", b"x-foo"})."""
    return {t.strip().lower() for v in values for t in v.split(b",") if t.strip()}


def drop_named(headers: list[bytes], names: set[bytes]) -> list[bytes]:
    """Remove headers named in Connection from a flat [name, b": ", value, b"\\r\\n", ...] list."""
    names = names - CONNECTION_OPTIONS - PROTECTED
    if not names:
        return headers
    out: list[bytes] = []
    for i in range(0, len(headers), 4):
        if headers[i].lower() not in names:
            out += headers[i : i + 4]
    return out


STATUS_LINES: dict[tuple[int, bytes], bytes] = {}  # status lines seen so far (a handful per backend)


def status_line(status: int, reason: bytes) -> bytes:
    """The status line (as HTTP/1.1) for a status and the backend's reason phrase (cached: a handful recur)."""
    line = STATUS_LINES.get((status, reason))
    if line is None:
        line = b"HTTP/1.1 %d %s\r\n" % (status, reason)
        if len(STATUS_LINES) < 256:
            STATUS_LINES[(status, reason)] = line
    return line


def choose_framing(status: int, is_head: bool, http11: bool, keep_alive: bool, cl: bytes | None,
                   te: bytes | None, upgrade: bytes | None) -> tuple[int, bool, bool, bytes]:
    """How a response goes to the client: (body mode, body ends at the backend's close, client
    connection closes after it, the framing and Connection header lines).

    A known length goes as it is; a chunked body, or one delimited by the backend closing, is re-chunked
    for an HTTP/1.1 client and ended by closing for an HTTP/1.0 one (it knows no chunking).
    """
    eof_body = False
    if status == 101:
        return NONE, False, False, b"Connection: Upgrade\r\nUpgrade: %s\r\n" % (upgrade or b"websocket")
    if is_head or status == 204 or status == 304:
        mode = NONE  # no body; the headers still describe the one a GET would get
        if cl is not None:
            framing = b"Content-Length: %s\r\n" % cl
        else:
            framing = b"Transfer-Encoding: %s\r\n" % te if te is not None and http11 else b""
    elif te is not None or cl is None:  # chunked, or (llhttp) delimited by the backend closing
        eof_body = te is None or not te.rstrip().lower().endswith(b"chunked")
        mode, framing = (CHUNKED, b"Transfer-Encoding: %s\r\n" % _chunked(te)) if http11 else (CLOSE, b"")
    else:
        mode, framing = LENGTH, b"Content-Length: %s\r\n" % cl
    keep = keep_alive and mode != CLOSE
    if not keep:
        return mode, eof_body, True, framing + b"Connection: close\r\n"
    return mode, eof_body, False, framing if http11 else framing + b"Connection: keep-alive\r\n"


def _chunked(te: bytes | None) -> bytes:
    """The Transfer-Encoding a re-chunked body carries: the backend's codings, chunked last."""
    if te is None:
        return b"chunked"
    return te if te.rstrip().lower().endswith(b"chunked") else te + b", chunked"
