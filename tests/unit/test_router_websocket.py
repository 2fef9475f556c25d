"""Websocket frame tracking and the router's close frames (no sockets: the tunnel writes into lists)."""

from __future__ import annotations

import os
import random

from shipyard.proxy.backends import Backend, BackendState
from shipyard.proxy.metrics import Counters
from shipyard.proxy.tunnel import Tunnel
from shipyard.proxy.websocket import FrameTracker, close_frame


def frame(opcode: int, payload: bytes, masked: bool = False, fin: bool = True) -> bytes:
    n = len(payload)
    head = bytes([(0x80 if fin else 0) | opcode])
    bit = 0x80 if masked else 0
    if n < 126:
        head += bytes([bit | n])
    elif n < 65536:
        head += bytes([bit | 126]) + n.to_bytes(2, "big")
    else:
        head += bytes([bit | 127]) + n.to_bytes(8, "big")
    if masked:
        mask = os.urandom(4)
        return head + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
    return head + payload


def decode(stream: bytes) -> list[tuple[int, bytes]]:
    """Every whole frame of a byte stream, unmasked (a reference decoder independent of the tracker)."""
    out, pos = [], 0
    while pos < len(stream):
        n, at = stream[pos + 1] & 0x7F, pos + 2
        if n == 126:
            n, at = int.from_bytes(stream[at : at + 2], "big"), at + 2
        elif n == 127:
            n, at = int.from_bytes(stream[at : at + 8], "big"), at + 8
        mask = stream[at : at + 4] if stream[pos + 1] & 0x80 else b""
        at += len(mask)
        payload = stream[at : at + n]
        if mask:
            payload = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
        out.append((stream[pos] & 0x0F, payload))
        pos = at + n
    assert pos == len(stream), "stream ends mid-frame"
    return out


def test_boundaries_are_found_however_the_stream_is_cut() -> None:
    frames = [frame(1, b"hi"), frame(2, b"x" * 300, masked=True), frame(2, b"y" * 70_000),
              frame(0, b"", fin=False), frame(8, b"\x03\xe8", masked=True)]
    stream = b"".join(frames)
    ends = set()
    pos = 0
    for f in frames:
        pos += len(f)
        ends.add(pos)
    rng = random.Random(7)
    for _ in range(200):
        tracker, pos = FrameTracker(), 0
        while pos < len(stream):
            size = rng.choice([1, 2, 3, 5, 13, 64, 4096])
            chunk = stream[pos : pos + size]
            used = tracker.feed(chunk)
            assert used == len(chunk)
            pos += len(chunk)
            assert tracker.at_boundary == (pos in ends), pos
        assert tracker.closes == 1


def test_stop_returns_the_first_boundary() -> None:
    tracker = FrameTracker()
    data = frame(1, b"abc") + frame(1, b"defg")
    assert tracker.feed(data[:3]) == 3 and not tracker.at_boundary
    cut = tracker.feed(data[3:], stop=True)
    assert cut == len(frame(1, b"abc")) - 3 and tracker.at_boundary
    assert tracker.feed(b"", stop=True) == 0 and tracker.at_boundary


def test_close_frames() -> None:
    assert decode(close_frame(masked=False)) == [(8, b"\x03\xe9router draining")]
    masked = close_frame(masked=True)
    assert masked[1] & 0x80 and decode(masked) == [(8, b"\x03\xe9router draining")]
    assert close_frame(masked=True)[2:6] != masked[2:6]  # a fresh mask each time


class Sink:
    def __init__(self) -> None:
        self.data = b""
        self.closed = False

    def write(self, data: bytes) -> None:
        assert not self.closed, "write after close"
        self.data += data

    def close(self) -> None:
        self.closed = True


class Side:
    def __init__(self) -> None:
        self.transport = Sink()


def tunnel() -> tuple[Tunnel, Sink, Sink]:
    client, upstream = Side(), Side()
    state = BackendState(Backend("127.0.0.1:1", 1, "r", "i"), Counters())
    t = Tunnel(client, upstream, state, websocket=True)  # type: ignore[arg-type]
    state.tunnels.add(t)
    return t, client.transport, upstream.transport


def test_go_away_at_boundaries_both_ways() -> None:
    t, to_client, to_backend = tunnel()
    t.from_backend(frame(1, b"hello"))
    t.go_away()
    assert decode(to_client.data) == [(1, b"hello"), (8, b"\x03\xe9router draining")]
    assert decode(to_backend.data) == [(8, b"\x03\xe9router draining")] and to_backend.data[1] & 0x80
    assert t.client_got_close and not t.closed
    t.from_backend(frame(8, b"\x03\xe9"))  # the app answers the router's close: not the client's business
    assert decode(to_client.data)[-1] == (8, b"\x03\xe9router draining")
    t.from_client(frame(8, b"\x03\xe9", masked=True))  # the client answers: handshake done
    assert t.closed and to_client.closed and to_backend.closed
    assert decode(to_backend.data) == [(8, b"\x03\xe9router draining")]  # the client's reply is swallowed


def test_go_away_waits_for_the_frame_in_progress() -> None:
    t, to_client, to_backend = tunnel()
    big = frame(2, b"z" * 100_000)
    upload = frame(2, b"u" * 1000, masked=True)
    t.from_backend(big[:50_000])
    t.from_client(upload[:10])
    t.go_away()
    assert to_client.data == big[:50_000] and to_backend.data == upload[:10]  # nothing cut into a frame
    t.from_backend(big[50_000:] + frame(1, b"after"))  # the rest of the frame, then one the client won't see
    assert decode(to_client.data) == [(2, b"z" * 100_000), (8, b"\x03\xe9router draining")]
    t.from_client(upload[10:] + frame(1, b"late", masked=True) + frame(8, b"\x03\xe9", masked=True))
    assert decode(to_backend.data) == [(2, b"u" * 1000), (8, b"\x03\xe9router draining")]
    assert t.closed


def test_app_close_counts_as_a_close_to_the_client() -> None:
    t, _to_client, _ = tunnel()
    t.from_backend(frame(8, b"\x03\xe9"))
    assert t.client_got_close


def test_other_upgrades_can_only_be_cut() -> None:
    client, upstream = Side(), Side()
    state = BackendState(Backend("127.0.0.1:1", 1, "r", "i"), Counters())
    t = Tunnel(client, upstream, state, websocket=False)  # type: ignore[arg-type]
    t.from_backend(b"\x00\x01raw")
    t.go_away()
    assert client.transport.data == b"\x00\x01raw" and not t.client_got_close
    t.cut()
    assert client.transport.closed and upstream.transport.closed
