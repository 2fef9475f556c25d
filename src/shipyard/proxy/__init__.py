"""Built-in router: an asyncio HTTP/1.1 reverse proxy with per-request weighted routing and drain.

Hot path on asyncio Protocols + httptools (uvloop when the process installed its policy); see
``server.RouterServer`` for the lifecycle and ``metrics.render_prometheus`` for the /metrics text.

The routers run in their own processes, apart from the agent (process.py), watched by a keeper that
holds their listening sockets (keeper.py). What other packages may use is exported here: the router
itself, its admin client, the keeper's control functions and the file names; nothing else. Names load
on first use, so the keeper (which imports this package first) stays small, and the CLI pays only
for what it touches.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .backends import Backend
    from .drain import DrainReport
    from .errors import RouterConflict, RouterNotFound, RouterRequestError, RouterUnavailableError
    from .keeperctl import KeeperError, agent_expected, ensure_keeper, keeper_argv, keeper_pid, stop_keeper
    from .keeperctl import request as keeper_request
    from .keeperctl import status as keeper_status
    from .metrics import render_prometheus
    from .options import RouterOptions
    from .paths import ProxyPaths
    from .routerctl import RouterClient
    from .server import RouterServer

_EXPORTS = {
    "Backend": (".backends", "Backend"),
    "DrainReport": (".drain", "DrainReport"),
    "KeeperError": (".keeperctl", "KeeperError"),
    "ProxyPaths": (".paths", "ProxyPaths"),
    "RouterClient": (".routerctl", "RouterClient"),
    "RouterConflict": (".errors", "RouterConflict"),
    "RouterNotFound": (".errors", "RouterNotFound"),
    "RouterOptions": (".options", "RouterOptions"),
    "RouterRequestError": (".errors", "RouterRequestError"),
    "RouterServer": (".server", "RouterServer"),
    "RouterUnavailableError": (".errors", "RouterUnavailableError"),
    "agent_expected": (".keeperctl", "agent_expected"),
    "ensure_keeper": (".keeperctl", "ensure_keeper"),
    "keeper_argv": (".keeperctl", "keeper_argv"),
    "keeper_pid": (".keeperctl", "keeper_pid"),
    "keeper_request": (".keeperctl", "request"),
    "keeper_status": (".keeperctl", "status"),
    "render_prometheus": (".metrics", "render_prometheus"),
    "stop_keeper": (".keeperctl", "stop_keeper"),
}
__all__ = [
    "Backend",
    "DrainReport",
    "KeeperError",
    "ProxyPaths",
    "RouterClient",
    "RouterConflict",
    "RouterNotFound",
    "RouterOptions",
    "RouterRequestError",
    "RouterServer",
    "RouterUnavailableError",
    "agent_expected",
    "ensure_keeper",
    "keeper_argv",
    "keeper_pid",
    "keeper_request",
    "keeper_status",
    "render_prometheus",
    "stop_keeper",
]


def __getattr__(name: str) -> Any:
    try:
        module, attr = _EXPORTS[name]
    except KeyError:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}") from None
    value = getattr(importlib.import_module(module, __name__), attr)
    globals()[name] = value
    return value
