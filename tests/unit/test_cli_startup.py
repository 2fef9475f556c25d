"""A `shipyard` command loads what it uses, and no more: every call is a new process, and the imports of
commands it does not run (SQLAlchemy's ORM for `config validate`, the engine for `status`) used to cost
each call a second or more. Checked on the real command's modules, not on timings (which a loaded machine
would make flaky), so a heavy import creeping back into a light command fails here.
"""

from __future__ import annotations

import importlib.util
import json
import os
import ssl
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

import shipyard
from shipyard.agent.client import AgentClient
from shipyard.agent.daemon import agent_status
from shipyard.demo.workspace import create_workspace
from shipyard.proxy import RouterClient
from shipyard.store import Store

pytestmark = pytest.mark.timeout(120)

# Runs one command in-process as `python -m shipyard.cli.main` would, then writes the names of every
# module it imported (atexit: the command ends with sys.exit).
RUN_AND_LIST = """
import atexit, json, runpy, sys
out, args = sys.argv[1], sys.argv[2:]
atexit.register(lambda: open(out, "w").write(json.dumps(sorted(sys.modules))))
sys.argv = ["shipyard", *args]
runpy.run_module("shipyard.cli.main", run_name="__main__")
"""

HEAVY_FOR_EVERYONE = ("alembic", "shipyard.notify.channels", "aiosmtplib", "boto3", "scipy")


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    ws = create_workspace(tmp_path_factory.mktemp("startup") / "ws", api_port=1, web_port=2)
    with Store.open(f"sqlite:///{ws.root / '.shipyard' / 'state.db'}"):
        pass                                        # at the newest schema already, as nearly always
    return ws.root


def loaded(root: Path, *args: str) -> set[str]:
    out = root.parent / "modules.json"
    env = {k: v for k, v in os.environ.items() if not k.startswith("SHIPYARD_")}
    done = subprocess.run([sys.executable, "-c", RUN_AND_LIST, str(out), *args], cwd=root, env={**env, "CI": "true"},
                          stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=60)
    assert "Traceback" not in done.stderr, done.stderr
    return set(json.loads(out.read_text()))


def _under(modules: set[str], *packages: str) -> list[str]:
    """The modules that are one of `packages` or inside one."""
    return sorted(m for m in modules if any(m == p or m.startswith(f"{p}.") for p in packages))


@pytest.mark.parametrize("args", [("config", "validate"), ("agent", "status"), ("env", "show", "api", "--env", "stg"),
                                  ("repos", "list")])
def test_commands_that_keep_no_records_load_no_orm_and_no_engine(project: Path, args: tuple[str, ...]) -> None:
    modules = loaded(project, *args)
    assert "shipyard.config" in modules                     # the command really ran
    assert _under(modules, "sqlalchemy.orm", "shipyard.store", "shipyard.engine.deployer",
                  *HEAVY_FOR_EVERYONE) == []


def test_status_loads_the_store_but_not_the_engine_or_the_fleet(project: Path) -> None:
    modules = loaded(project, "status")
    assert {"shipyard.store", "sqlalchemy.orm", "shipyard.agent.client"} <= modules
    assert _under(modules, "shipyard.engine.deployer", "shipyard.engine.run", "shipyard.fleet",
                  "sqlalchemy.dialects.postgresql", *HEAVY_FOR_EVERYONE) == []


def test_read_commands_do_not_load_the_engine(project: Path) -> None:
    for args in (("history",), ("history", "--promotions")):
        modules = loaded(project, *args)
        assert "shipyard.store" in modules
        assert _under(modules, "shipyard.engine.deployer", "shipyard.fleet", *HEAVY_FOR_EVERYONE) == [], args


def test_help_still_lists_every_command(project: Path) -> None:
    modules = loaded(project, "--help")
    assert {"shipyard.cli.deploy", "shipyard.cli.promote", "shipyard.cli.notify", "shipyard.cli.watch"} <= modules


async def test_admin_api_clients_build_no_tls_context(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Plain HTTP over a unix socket: loading the CA bundle for it cost ~50 ms per client, several per command."""
    built: list[Any] = []
    real = ssl.create_default_context
    monkeypatch.setattr(ssl, "create_default_context", lambda *a, **kw: built.append(a) or real(*a, **kw))
    (tmp_path / "agent.sock").write_text("not a socket")        # so the sync client really connects (and fails)
    assert agent_status(tmp_path) is None
    async with AgentClient(tmp_path), RouterClient(tmp_path):
        pass
    assert built == []


def test_shipyard_processes_find_bytecode() -> None:
    """The session compiled every module (conftest), so no shipyard process compiles one again even where
    PYTHONDONTWRITEBYTECODE keeps Python from caching it."""
    root = Path(shipyard.__file__).resolve().parent
    stale = [str(src.relative_to(root)) for src in root.rglob("*.py")
             if not Path(importlib.util.cache_from_source(str(src))).is_file()
             or Path(importlib.util.cache_from_source(str(src))).stat().st_mtime < src.stat().st_mtime]
    assert stale == []


def test_the_router_process_loads_no_http_client() -> None:
    """A router process starts on every host start, `agent restart` and after a router crash (when traffic
    waits for it): httpx, and the click, rich and pygments its __init__ pulls in, cost it ~0.1 s."""
    done = subprocess.run([sys.executable, "-c", "import json, sys, shipyard.proxy.process; "
                           "print(json.dumps(sorted(sys.modules)))"], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert _under(set(json.loads(done.stdout)), "httpx", "rich", "click", "typer", "sqlalchemy", "pydantic") == []
