"""Importing shipyard prints nothing: a dependency's import-time warning (cryptography deprecating the DSA
support asyncssh imports) would open the stderr of every command, ahead of the one line a user reads."""

from __future__ import annotations

import subprocess
import sys

import pytest

MODULES = ("shipyard.ssh.pool", "shipyard.ssh.known_hosts", "shipyard.hosts.agent", "shipyard.routers.nginx",
           "shipyard.cli.main")


@pytest.mark.parametrize("module", MODULES)
def test_importing_prints_no_warning(module: str) -> None:
    done = subprocess.run([sys.executable, "-c", f"import {module}"], capture_output=True, text=True, timeout=60,
                          env={"PATH": "/usr/bin:/bin"})  # the warnings a user sees
    assert done.returncode == 0 and done.stderr == "", done.stderr
