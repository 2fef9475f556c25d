"""free_port never promises one port twice in a row: the kernel may hand the same port to consecutive
bind(0) calls while nobody listens on it yet (a workspace's router and `shipyard serve` once got the same
one, and the deploy was refused: address in use)."""

from __future__ import annotations

import socket
from collections import deque

import pytest

from shipyard import ipc


def test_a_port_handed_out_is_not_handed_out_again(monkeypatch: pytest.MonkeyPatch) -> None:
    kernel = iter([40001, 40001, 40002, 40001, 40003, 40004])

    class Socket(socket.socket):
        def getsockname(self) -> tuple[str, int]:  # what bind(0) picked, as the kernel might
            return ("127.0.0.1", next(kernel))

    monkeypatch.setattr(ipc.socket, "socket", Socket)
    monkeypatch.setattr(ipc, "_RECENT_PORTS", deque(maxlen=256))
    assert [ipc.free_port(), ipc.free_port(), ipc.free_port(exclude=[40003])] == [40001, 40002, 40004]


def test_ports_are_really_free() -> None:
    ports = [ipc.free_port() for _ in range(20)]
    assert len(set(ports)) == 20
    for port in ports:
        with socket.socket() as s:
            s.bind(("127.0.0.1", port))
