"""Fixtures for tests against a real sshd (shipyard.testing.sshd): present under CI, else skipped."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from shipyard.ssh import HostSpec, KnownHosts, SshOptions, SshPool
from shipyard.testing.servers import missing_server
from shipyard.testing.sshd import Sshd, sshd_available


def require_sshd() -> None:
    if not sshd_available():
        missing_server("sshd (Debian's openssh-server) is missing or this is not root: "
                       "scripts/bootstrap installs it")


@pytest.fixture(name="sshd")
def sshd_fixture(tmp_path: Path) -> Iterator[Sshd]:
    require_sshd()
    server = Sshd(tmp_path / "sshd")
    server.start()
    try:
        yield server
    finally:
        server.stop()


def spec(server: Sshd, name: str = "web-1", *, port: int | None = None) -> HostSpec:
    return HostSpec(name=name, address="127.0.0.1", user=server.user, port=port or server.port,
                    release_dir=str(server.dir / "releases"))


def trusted_pool(server: Sshd, tmp_path: Path, hosts: list[HostSpec] | None = None, **options: object) -> SshPool:
    known = tmp_path / "known_hosts"
    KnownHosts(known).record("127.0.0.1", server.port, server.host_key)
    return pool(server, known, hosts, **options)


def pool(server: Sshd, known: Path, hosts: list[HostSpec] | None = None, **options: object) -> SshPool:
    chosen = hosts or [spec(server)]
    settings: dict[str, object] = {"client_key": server.client_key_path.read_text(), "connect_timeout": 10.0,
                                   **options}
    return SshPool({h.name: h for h in chosen}, SshOptions(known_hosts=known, **settings))  # type: ignore[arg-type]
