"""The keeper's listening sockets: bound once, kept open for the life of the host, lent to routers.

A listening socket held here keeps its port and its backlog while no router process runs: a client
that connects then waits in the kernel queue (as long as the TCP handshake allows) and is accepted by
the next router generation, instead of being refused. Routers get duplicates over the channel; the
keeper never accepts on them itself.
"""

from __future__ import annotations

import contextlib
import socket
from typing import Any

BACKLOG = 1024


def split_listen(listen: str) -> tuple[str, int]:
    """ "host:port" or "[v6]:port" -> (host, port); ValueError naming the value otherwise."""
    host, sep, port = listen.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 <= int(port) < 65536:
        raise ValueError(f"listen must be host:port, got {listen!r}")
    return host.strip("[]"), int(port)


def _resolve(listen: str) -> tuple[int, int, int, Any]:
    host, port = split_listen(listen)
    family, kind, proto, _, addr = socket.getaddrinfo(host, port, 0, socket.SOCK_STREAM, 0,
                                                      socket.AI_PASSIVE)[0]
    return family, kind, proto, addr


def _shown(addr: Any) -> str:
    host, port = addr[:2]
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def canonical(listen: str) -> str:
    """The address `listen` binds to, as bound sockets are keyed ("localhost:80" -> "127.0.0.1:80")."""
    return _shown(_resolve(listen)[3])


def bind_tcp(listen: str) -> tuple[socket.socket, str]:
    """Bind and listen on `listen`; returns the socket and its real address (port 0 resolved)."""
    family, kind, proto, addr = _resolve(listen)
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(addr)
        sock.listen(BACKLOG)
        sock.setblocking(False)
    except BaseException:
        sock.close()
        raise
    return sock, _shown(sock.getsockname())


class ListenerTable:
    """Sockets by bound address, plus what callers asked for ("localhost:80" -> "127.0.0.1:80")."""

    def __init__(self) -> None:
        self.socks: dict[str, socket.socket] = {}
        self.aliases: dict[str, str] = {}

    def get_or_bind(self, listen: str) -> tuple[socket.socket, str]:
        bound = self.aliases.get(listen) or (listen if listen in self.socks else None)
        if bound is None and not listen.endswith(":0"):
            bound = canonical(listen)          # the same address asked for by another name
        if bound is not None and bound in self.socks:
            self.aliases[listen] = bound
            return self.socks[bound], bound
        sock, bound = bind_tcp(listen)
        self.socks[bound] = sock
        if not listen.endswith(":0"):
            self.aliases[listen] = bound
        return sock, bound

    def adopt(self, bound: str, sock: socket.socket) -> None:
        self.socks[bound] = sock
        self.aliases[bound] = bound

    def release(self, listen: str) -> None:
        bound = self.aliases.pop(listen, listen)
        sock = self.socks.pop(bound, None)
        if sock is not None:
            sock.close()
        for alias in [a for a, b in self.aliases.items() if b == bound]:
            del self.aliases[alias]

    def keep_only(self, listens: list[str]) -> None:
        keep = {self.aliases.get(x, x) for x in listens}
        for bound in [b for b in self.socks if b not in keep]:
            self.release(bound)

    def close_all(self) -> None:
        for sock in self.socks.values():
            with contextlib.suppress(OSError):
                sock.close()
        self.socks.clear()
        self.aliases.clear()
