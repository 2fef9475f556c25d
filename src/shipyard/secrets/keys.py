"""Where the local store's master key comes from: SHIPYARD_MASTER_KEY, else a key file outside the repo.

CI sets the variable; a laptop gets a key file created on first `shipyard secrets set`. The file must
not live inside the project (it would end up committed next to the ciphertext it opens) and must not be
readable by others (the same rule ssh applies to private keys).
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass
from pathlib import Path

from shipyard.errors import SecretsError, UsageError
from shipyard.secrets.sealing import decode_key, encode_key, new_key, write_private

MASTER_KEY_ENV = "SHIPYARD_MASTER_KEY"


@dataclass(frozen=True)
class KeySource:
    """How to find (and, when allowed, create) the master key of one project."""

    key_file: Path
    project_root: Path
    environ_value: str | None = None

    @classmethod
    def for_project(cls, project: str, project_root: Path, key_file: str | None = None,
                    environ: dict[str, str] | None = None) -> KeySource:
        env = os.environ if environ is None else environ
        if key_file:
            path = Path(os.path.expanduser(key_file))
            path = path if path.is_absolute() else project_root / path
        else:
            base = Path(env.get("XDG_CONFIG_HOME") or Path.home() / ".config")
            path = base / "shipyard" / f"{project}.key"
        return cls(key_file=path, project_root=project_root, environ_value=env.get(MASTER_KEY_ENV) or None)

    @property
    def where(self) -> str:
        """Where the key came from, for error messages (never the key)."""
        return MASTER_KEY_ENV if self.environ_value else str(self.key_file)

    def load(self, *, create: bool = False) -> bytes:
        """The key; with `create`, a new key file is written (0600) when there is none yet."""
        if self.environ_value:
            try:
                return decode_key(self.environ_value)
            except ValueError as exc:
                raise SecretsError(f"{MASTER_KEY_ENV} is not a usable key ({exc}): it must be 32 random bytes "
                                   "in base64, e.g. from `openssl rand -base64 32`") from None
        self._check_outside_repo()
        path = self.key_file
        if not path.exists():
            if not create:
                raise SecretsError(f"no master key: set {MASTER_KEY_ENV} or create {path} with "
                                   "`shipyard secrets set` (it makes one)")
            path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            write_private(path, encode_key(new_key()) + "\n")
        mode = stat.S_IMODE(path.stat().st_mode)
        if mode & 0o077:
            raise SecretsError(f"master key file {path} is readable by others (mode {mode:04o}); "
                               f"run `chmod 600 {path}`")
        try:
            return decode_key(path.read_text())
        except ValueError as exc:
            raise SecretsError(f"master key file {path} is not a usable key ({exc})") from None

    def _check_outside_repo(self) -> None:
        key = self.key_file.resolve()
        root = self.project_root.resolve()
        if key == root or root in key.parents:
            raise UsageError(f"master key file {self.key_file} is inside the project {root}; keep it outside "
                             "the repository (secrets.key_file) or use SHIPYARD_MASTER_KEY")
