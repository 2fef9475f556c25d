"""SSH to the fleet: a pool of one multiplexed connection per host, strict known_hosts, argv-only commands.

Public API (what deploy-over-SSH builds on):
- SshPool(hosts, options): `async with` it; `run(name, argv, stdin=, timeout=, env=)` -> RunResult,
  `each(names, work)` (bounded by `ssh.parallel`), `connection(name)`, `close()`.
- HostSpec, SshOptions, RunResult; hosts_from_config(config), options_from_config(config, root, key).
- fetch_host_key(host, timeout), KnownHosts(path), fingerprint(key), pattern(address, port).
- command_line(argv, env): the one place an argv becomes a remote command line.
- Errors (shipyard.errors): SshError > SshUnreachable, SshRefused, SshTimeout, SshAuthFailed,
  SshDisconnected, HostKeyError > HostKeyUnknown, HostKeyChanged; UnknownHostError (a usage error).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from shipyard.ssh.known_hosts import KnownHosts, fingerprint, pattern
from shipyard.ssh.pool import HostSpec, RunResult, SshOptions, SshPool, fetch_host_key, load_client_key
from shipyard.ssh.remote import command_line


def hosts_from_config(config: Any) -> dict[str, HostSpec]:
    """`hosts:` of a loaded Config as HostSpecs, in config order."""
    return {name: HostSpec(name=name, address=h.address, user=h.user, port=h.port, release_dir=h.release_dir,
                           labels=dict(h.labels)) for name, h in config.hosts.items()}


def options_from_config(config: Any, root: Path, client_key: str | None) -> SshOptions:
    """`ssh:` with paths anchored at shipyard.yaml's directory and the key's text already resolved."""
    ssh = config.ssh
    return SshOptions(known_hosts=(root / ssh.known_hosts).resolve(), client_key=client_key,
                      connect_timeout=ssh.connect_timeout, keepalive=ssh.keepalive, parallel=ssh.parallel)


__all__ = ["HostSpec", "KnownHosts", "RunResult", "SshOptions", "SshPool", "command_line", "fetch_host_key",
           "fingerprint", "hosts_from_config", "load_client_key", "options_from_config", "pattern"]
