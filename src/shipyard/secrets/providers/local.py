"""The embedded default provider: one AES-GCM encrypted file per environment, .shipyard/secrets/<env>.enc.

The whole file is one sealed JSON object (a handful of names, read and written together), bound to its
project and environment. A wrong key is an error naming the file and the key's origin, never garbage.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path

from shipyard.errors import SecretsError
from shipyard.secrets.base import check_name
from shipyard.secrets.keys import KeySource
from shipyard.secrets.sealing import SealError, seal, unseal, write_private

FORMAT = "shipyard-secrets/1"


class LocalProvider:
    """Secrets of one environment in an encrypted file."""

    label = "local"
    writable = True

    def __init__(self, directory: Path, project: str, env: str, keys: KeySource) -> None:
        self.path = directory / f"{env}.enc"
        self.project, self.env, self.keys = project, env, keys
        self._context = f"shipyard-secrets:{project}:{env}"

    def _shown(self) -> str:
        try:
            return str(self.path.relative_to(self.keys.project_root))
        except ValueError:
            return str(self.path)

    def _read(self) -> dict[str, str]:
        if not self.path.exists():
            return {}
        try:
            envelope = json.loads(self.path.read_text())
            if envelope.get("format") != FORMAT:
                raise ValueError("unknown format")
            token = envelope["data"]
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise SecretsError(f"{self._shown()} is not a shipyard secrets file ({exc})") from None
        key = self.keys.load()
        try:
            data = json.loads(unseal(key, token, self._context))
        except SealError:
            raise SecretsError(f"cannot decrypt {self._shown()}: wrong master key (from {self.keys.where}) "
                               f"or the file is not {self.project}/{self.env}'s or was changed") from None
        if not isinstance(data, dict):
            raise SecretsError(f"{self._shown()} holds no name/value table")
        return {str(k): str(v) for k, v in data.items()}

    def _write(self, data: dict[str, str]) -> None:
        key = self.keys.load(create=True)
        self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        token = seal(key, json.dumps(data, sort_keys=True).encode(), self._context)
        write_private(self.path, json.dumps({"format": FORMAT, "project": self.project, "env": self.env,
                                             "data": token}, indent=1) + "\n")

    def get(self, names: Iterable[str]) -> dict[str, str]:
        wanted = list(names)
        if not wanted:
            return {}
        data = self._read()
        return {n: data[n] for n in wanted if n in data}

    def set(self, name: str, value: str) -> None:
        data = self._read()
        data[check_name(name)] = value
        self._write(data)

    def list(self) -> list[str]:
        return sorted(self._read())

    def delete(self, name: str) -> bool:
        data = self._read()
        if name not in data:
            return False
        del data[name]
        self._write(data)
        return True
