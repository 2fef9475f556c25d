"""The project's known_hosts file: the only host keys shipyard trusts (OpenSSH format, so `ssh -o
UserKnownHostsFile=...` reads the same file).

A host is recorded under its address and port as OpenSSH writes them (`198.18.0.11`, `[127.0.0.1]:2222`):
hosts entries pointing at one server share its key, as they share the server. Writes replace the file
atomically, so a crash never leaves half a line that would make every host untrusted.
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

import asyncssh

from shipyard.errors import OSFailure, UsageError


def pattern(address: str, port: int) -> str:
    """How OpenSSH names (address, port) in known_hosts."""
    return address if port == 22 else f"[{address}]:{port}"


def fingerprint(key: asyncssh.SSHKey) -> str:
    """`SHA256:...`, as `ssh-keygen -lf` and OpenSSH's own prompts show it."""
    return str(key.get_fingerprint("sha256"))


@dataclass(frozen=True)
class KnownHosts:
    path: Path

    def text(self) -> str:
        try:
            return self.path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return ""
        except OSError as exc:
            raise OSFailure.of(exc, "reading known_hosts") from exc

    def parsed(self) -> asyncssh.SSHKnownHosts:
        try:
            return asyncssh.import_known_hosts(self.text())
        except (ValueError, asyncssh.KeyImportError) as exc:
            raise UsageError(f"{self.path}: not a known_hosts file: {exc}") from None

    def keys_for(self, address: str, port: int) -> list[asyncssh.SSHKey]:
        """The host keys trusted for (address, port); [] when none is recorded."""
        match = self.parsed().match(address, address, port)
        # The same line matches as host and as address: one key per distinct public key.
        return list({bytes(k.public_data): k for k in match[0]}.values())

    def record(self, address: str, port: int, key: asyncssh.SSHKey, *, replace: bool = False) -> None:
        """Add `key` for (address, port); with `replace`, drop the keys recorded for it before."""
        name = pattern(address, port)
        lines = self.text().splitlines()
        if replace:
            lines = [line for line in lines if not _names(line, name)]
        entry = f"{name} {key.export_public_key('openssh').decode('ascii').strip()}"
        if entry not in lines:
            lines.append(entry)
        self._write("".join(line + "\n" for line in lines))

    def _write(self, text: str) -> None:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=self.path.parent, prefix=".known_hosts.")
            try:
                with os.fdopen(fd, "w", encoding="utf-8") as out:
                    out.write(text)
                    out.flush()
                    os.fsync(out.fileno())
                os.chmod(tmp, 0o644)
                os.replace(tmp, self.path)
            except BaseException:
                Path(tmp).unlink(missing_ok=True)
                raise
        except OSError as exc:
            raise OSFailure.of(exc, "writing known_hosts") from exc


def _names(line: str, name: str) -> bool:
    """Whether a known_hosts line's (plain, unhashed) host list holds `name`."""
    fields = line.split()
    if not fields or line.lstrip().startswith("#"):
        return False
    hosts = fields[1] if fields[0].startswith("@") and len(fields) > 1 else fields[0]
    return name in hosts.split(",")
