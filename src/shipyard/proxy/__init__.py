"""Built-in router: an asyncio HTTP/1.1 reverse proxy with per-request weighted routing and drain.

Hot path on asyncio Protocols + httptools (uvloop when the process installed its policy); see
``server.RouterServer`` for the lifecycle and ``metrics.render_prometheus`` for the /metrics text.
"""

from .backends import Backend
from .drain import DrainReport
from .metrics import render_prometheus
from .options import RouterOptions
from .server import RouterServer

__all__ = ["Backend", "DrainReport", "RouterOptions", "RouterServer", "render_prometheus"]
