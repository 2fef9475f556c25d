"""Built-in router: an asyncio HTTP/1.1 reverse proxy with per-request weighted routing and drain.

Hot path on asyncio Protocols + httptools (uvloop when the process installed its policy); see
``server.RouterServer`` for the lifecycle and ``metrics.render_prometheus`` for the /metrics text.

The routers run in their own processes, apart from the agent (process.py), watched by a keeper that
holds their listening sockets (keeper.py). What other packages may use is exported here: the router
itself, its admin client, the keeper's control functions and the file names; nothing else.
"""

from .backends import Backend
from .errors import RouterConflict, RouterNotFound, RouterRequestError, RouterUnavailableError
from .keeperctl import KeeperError, agent_expected, ensure_keeper, keeper_argv, keeper_pid, stop_keeper
from .keeperctl import request as keeper_request
from .keeperctl import status as keeper_status
from .metrics import render_prometheus
from .options import RouterOptions
from .paths import ProxyPaths
from .routerctl import RouterClient
from .server import RouterServer

__all__ = [
    "Backend",
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
