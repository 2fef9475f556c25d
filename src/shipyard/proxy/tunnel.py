"""An upgraded connection (a websocket): bytes pass unparsed both ways until either side closes.

For a websocket the router follows frame boundaries in both directions (websocket.FrameTracker), so that
when a drain's budget ends it can close the connection the way RFC 6455 7 wants: a close frame with
1001 (going away) to the client (unmasked) and to the backend (masked, as a client must), each written
between two frames. After its own close frame the router swallows what that peer still sends, watching
only for the close frame that answers it; the client never sees the abnormal closure 1006.
"""

from __future__ import annotations

from collections.abc import Callable

from .backends import BackendState
from .exchange import Downstream, Upstream
from .websocket import FrameTracker, close_frame

TO_CLIENT, TO_BACKEND = 1, 2


class Tunnel:
    """Both halves of one upgraded connection and, for websockets, where each direction's frames stand."""

    __slots__ = ("client", "closed", "pending", "reply_mark", "sent", "state", "to_backend", "to_client",
                 "upstream")

    def __init__(self, client: Downstream, upstream: Upstream, state: BackendState, websocket: bool) -> None:
        self.client = client
        self.upstream = upstream
        self.state = state
        self.to_backend = FrameTracker() if websocket else None
        self.to_client = FrameTracker() if websocket else None
        self.pending = 0  # TO_CLIENT / TO_BACKEND: a close frame waits for the next frame boundary
        self.sent = 0  # close frames the router wrote
        self.reply_mark = 0  # client close frames seen when the router's close went to the client
        self.closed = False

    @property
    def client_got_close(self) -> bool:
        """A close frame went to the client: from the router, or the app's own passing through."""
        return bool(self.sent & TO_CLIENT) or (self.to_client is not None and self.to_client.closes > 0)

    # -- bytes ------------------------------------------------------------------------------------
    def from_client(self, data: bytes) -> None:
        tracker = self.to_backend
        if tracker is None:
            self.upstream.transport.write(data)
        elif not (self.pending | self.sent) & TO_BACKEND:
            tracker.feed(data)
            self.upstream.transport.write(data)
        else:
            self._pass(data, tracker, TO_BACKEND, self.upstream.transport.write)

    def from_backend(self, data: bytes) -> None:
        tracker = self.to_client
        if tracker is None:
            self.client.transport.write(data)
        elif not (self.pending | self.sent) & TO_CLIENT:
            tracker.feed(data)
            self.client.transport.write(data)
        else:
            self._pass(data, tracker, TO_CLIENT, self.client.transport.write)

    def _pass(self, data: bytes, tracker: FrameTracker, side: int, write: Callable[[bytes], None]) -> None:
        """Slow path once a close is due: forward up to the next boundary, inject, swallow the rest."""
        if self.sent & side:
            tracker.feed(data)  # the peer's frames after the router's close end here
        else:
            cut = tracker.feed(data, stop=True)
            if not tracker.at_boundary:
                write(data)
                return
            if cut:
                write(data[:cut])
            self._inject(side)
            if cut < len(data):
                tracker.feed(data[cut:])
        self._maybe_done()

    # -- closing ----------------------------------------------------------------------------------
    def go_away(self) -> None:
        """Send close frames (1001) at the next frame boundaries; other upgrades can only be cut."""
        if self.closed or self.to_client is None or self.to_backend is None:
            return
        self.pending = (TO_CLIENT | TO_BACKEND) & ~self.sent
        if self.pending & TO_CLIENT and self.to_client.at_boundary:
            self._inject(TO_CLIENT)
        if self.pending & TO_BACKEND and self.to_backend.at_boundary:
            self._inject(TO_BACKEND)
        self._maybe_done()

    def _inject(self, side: int) -> None:
        self.pending &= ~side
        self.sent |= side
        if side == TO_CLIENT:
            self.reply_mark = self.to_backend.closes if self.to_backend is not None else 0
            self.client.transport.write(close_frame(masked=False))
        else:
            self.upstream.transport.write(close_frame(masked=True))

    def _maybe_done(self) -> None:
        """The client answered the router's close frame: the handshake is over, close the TCP connections."""
        if self.sent & TO_CLIENT and self.to_backend is not None and self.to_backend.closes > self.reply_mark:
            self.cut()

    def cut(self) -> None:
        """Close both sides now (whatever was written before still goes out first)."""
        if self.closed:
            return
        self.closed = True
        self.client.transport.close()
        self.upstream.transport.close()

    def backend_closed(self) -> None:
        """The backend connection is gone: so is the tunnel."""
        self.state.tunnel_done(self)
        if not self.closed:
            self.closed = True
            self.client.transport.close()
