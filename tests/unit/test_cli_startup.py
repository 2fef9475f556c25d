"""A `shipyard` command loads what it uses, and no more: every call is a new process."""

from __future__ import annotations

import ssl
from pathlib import Path
from typing import Any

import pytest

from shipyard.agent.client import AgentClient
from shipyard.agent.daemon import agent_status
from shipyard.proxy import RouterClient

pytestmark = pytest.mark.timeout(120)


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
