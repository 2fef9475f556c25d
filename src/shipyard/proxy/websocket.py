"""Websocket frame boundaries, tracked as bytes pass, so the router can inject a close frame safely.

RFC 6455 5.2: a frame is a 2-byte header, an extended length (0, 2 or 8 bytes), a masking key (4 bytes on
client-to-server frames) and the payload. ``FrameTracker`` reads only headers and skips payloads, so a
large frame costs one subtraction per chunk; the router never unmasks or copies payload bytes. A control
frame (close) may sit between the fragments of a message (5.4), so any frame boundary is a safe place.
"""

from __future__ import annotations

import os

OP_CLOSE = 0x8
GOING_AWAY = 1001
_CLOSE_PAYLOAD = GOING_AWAY.to_bytes(2, "big") + b"router draining"


def close_frame(masked: bool) -> bytes:
    """A close frame with status 1001 (going away): unmasked to the client, masked to the backend."""
    payload = _CLOSE_PAYLOAD
    if not masked:
        return bytes([0x80 | OP_CLOSE, len(payload)]) + payload
    mask = os.urandom(4)  # RFC 6455 5.3: unpredictable per frame
    body = bytes(b ^ mask[i & 3] for i, b in enumerate(payload))
    return bytes([0x80 | OP_CLOSE, 0x80 | len(payload)]) + mask + body


class FrameTracker:
    """Where the frame stream of one direction stands: inside a payload, or at a frame boundary."""

    __slots__ = ("closes", "head", "left")

    def __init__(self) -> None:
        self.left = 0  # payload bytes of the current frame still to pass
        self.head = b""  # a frame header split across chunks
        self.closes = 0  # close frames seen in this direction

    @property
    def at_boundary(self) -> bool:
        return not self.left and not self.head

    def feed(self, data: bytes, stop: bool = False) -> int:
        """Follow ``data``; with ``stop``, halt at the first frame boundary and return its offset.

        Without ``stop`` (or when no boundary comes up) everything is consumed and ``len(data)`` returned.
        """
        pos, end = 0, len(data)
        while True:
            left = self.left
            if left:
                take = end - pos
                if take < left:
                    self.left = left - take
                    return end
                self.left = 0
                pos += left
            if stop and not self.head:
                return pos
            if pos >= end:
                return end
            pos = self._header(data, pos, end)

    def _header(self, data: bytes, pos: int, end: int) -> int:
        """Consume one frame header from ``data[pos:]`` (plus any split part held back)."""
        have = self.head
        head = have + data[pos : pos + 14 - len(have)]
        if len(head) < 2:
            self.head = head
            return end
        n = head[1] & 0x7F
        size = (4 if n == 126 else 10 if n == 127 else 2) + (4 if head[1] & 0x80 else 0)
        if len(head) < size:
            self.head = head
            return end
        if n == 126:
            n = int.from_bytes(head[2:4], "big")
        elif n == 127:
            n = int.from_bytes(head[2:10], "big")
        if head[0] & 0x0F == OP_CLOSE:
            self.closes += 1
        self.head = b""
        self.left = n
        return pos + size - len(have)
