"""A real OpenSSH server for tests: Debian's sshd on 127.0.0.1, its own config, host key and authorized key.

Public-key login only (UsePAM no, no passwords), as the user running the tests (root in CI). Started and
waited for with a deadline (its banner on the port), stopped with SIGTERM then SIGKILL. `restart(new_key=
True)` brings it back on the same port with a new host key, to test a changed key.
"""

from __future__ import annotations

import contextlib
import getpass
import os
import shutil
import socket
import subprocess
import time
from pathlib import Path

import asyncssh

from shipyard.ipc import free_port
from shipyard.testing.processes import stop_process

SSHD = "/usr/sbin/sshd"
START_TIMEOUT = 15.0


def sshd_available() -> bool:
    return os.path.exists(SSHD) and os.geteuid() == 0




def write_key(path: Path) -> asyncssh.SSHKey:
    """A new ed25519 private key at `path` (0600) and its public half at `path`.pub."""
    key = asyncssh.generate_private_key("ssh-ed25519")
    path.write_bytes(key.export_private_key())
    path.chmod(0o600)
    path.with_suffix(".pub").write_bytes(key.export_public_key())
    return key


def banner(port: int, timeout: float) -> bytes:
    """The server's first line, or b"" if it did not send one within `timeout`."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
            s.settimeout(timeout)
            return s.recv(64)
    except OSError:
        return b""


class Sshd:
    def __init__(self, directory: Path) -> None:
        self.dir = directory
        self.dir.mkdir(parents=True, exist_ok=True)
        self.user = getpass.getuser()
        self.host_key = write_key(self.dir / "host_key")
        self.client_key = write_key(self.dir / "client_key")
        (self.dir / "authorized_keys").write_bytes(self.client_key.export_public_key())
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def client_key_path(self) -> Path:
        return self.dir / "client_key"

    @property
    def fingerprint(self) -> str:
        return str(self.host_key.get_fingerprint("sha256"))

    def _config(self) -> Path:
        path = self.dir / "sshd_config"
        path.write_text("\n".join([
            f"Port {self.port}", "ListenAddress 127.0.0.1", f"HostKey {self.dir / 'host_key'}",
            f"PidFile {self.dir / 'sshd.pid'}", f"AuthorizedKeysFile {self.dir / 'authorized_keys'}",
            "PubkeyAuthentication yes", "PasswordAuthentication no", "KbdInteractiveAuthentication no",
            "UsePAM no", "PermitRootLogin prohibit-password", "StrictModes no", "LogLevel ERROR",
            "MaxStartups 100:30:200", "MaxSessions 20", "UseDNS no", "PrintMotd no", "Subsystem sftp internal-sftp",
            "",
        ]))
        return path

    def start(self) -> None:
        # Debian's sshd refuses to start without its privilege-separation directory (made by its service unit).
        Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)
        config = self._config()
        check = subprocess.run([SSHD, "-t", "-f", str(config)], capture_output=True, text=True, timeout=30)
        if check.returncode != 0:
            raise RuntimeError(f"sshd -t: {check.stderr.strip()}")
        log = open(self.dir / "sshd.log", "ab")  # noqa: SIM115 - the server's stderr for its whole life
        self.proc = subprocess.Popen([SSHD, "-D", "-e", "-f", str(config)], stdin=subprocess.DEVNULL,
                                     stdout=log, stderr=log)
        log.close()
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"sshd exited {self.proc.returncode}: {self.log()[-500:]}")
            if banner(self.port, 1.0).startswith(b"SSH-2.0"):
                return
            time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"sshd did not answer on port {self.port} within {START_TIMEOUT:g}s")

    def log(self) -> str:
        with contextlib.suppress(OSError):
            return (self.dir / "sshd.log").read_text(errors="replace")
        return ""

    def stop(self) -> None:
        proc, self.proc = self.proc, None
        if proc is not None and proc.poll() is None:
            stop_process(proc)

    def restart(self, *, new_key: bool = False) -> None:
        self.stop()
        if new_key:
            self.host_key = write_key(self.dir / "host_key")
        self.start()

    def cleanup(self) -> None:
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)
