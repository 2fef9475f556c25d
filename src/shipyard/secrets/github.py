"""Write values as GitHub Actions secrets through the REST API (repository or environment secrets).

GitHub only accepts values encrypted to the repository's public key with a libsodium sealed box, so the
plaintext never travels, even to GitHub's API frontend. The token comes from GITHUB_TOKEN (never argv).
"""

from __future__ import annotations

import base64
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import httpx

from shipyard.errors import SecretsError, UsageError

DEFAULT_API = "https://api.github.com"
TOKEN_ENV = "GITHUB_TOKEN"


def seal_for(public_key_b64: str, value: str) -> str:
    """A sealed box of `value` for the base64 public key GitHub handed out, base64-encoded."""
    from nacl.public import PublicKey, SealedBox

    key = PublicKey(base64.b64decode(public_key_b64))
    return base64.b64encode(SealedBox(key).encrypt(value.encode())).decode()


@dataclass(frozen=True)
class SyncResult:
    created: list[str]
    updated: list[str]


class GitHubSecrets:
    """One repository (optionally one of its environments) on one GitHub API."""

    def __init__(self, repo: str, token: str, *, api_url: str = DEFAULT_API, environment: str | None = None,
                 client: httpx.Client | None = None) -> None:
        owner, _, name = repo.partition("/")
        if not owner or not name or "/" in name:
            raise UsageError(f"--repo {repo!r}: expected owner/name")
        base = f"/repos/{quote(owner, safe='')}/{quote(name, safe='')}"
        self.base = f"{base}/environments/{quote(environment, safe='')}" if environment else base
        self.repo = repo
        self._client = client or httpx.Client(
            base_url=api_url.rstrip("/"), timeout=30.0,
            headers={"Authorization": f"Bearer {token}", "Accept": "application/vnd.github+json",
                     "X-GitHub-Api-Version": "2022-11-28", "User-Agent": "shipyard"})

    def close(self) -> None:
        self._client.close()

    def _call(self, method: str, path: str, **kw: Any) -> httpx.Response:
        try:
            resp = self._client.request(method, self.base + path, **kw)
        except httpx.HTTPError as exc:
            raise SecretsError(f"github {self.repo}: {type(exc).__name__}: {exc}") from None
        if resp.status_code >= 400:
            try:
                message = resp.json().get("message", resp.text)
            except ValueError:
                message = resp.text[:200]
            hint = " (check GITHUB_TOKEN's access to the repository)" if resp.status_code in (401, 403, 404) else ""
            raise SecretsError(f"github {self.repo}: {method} {path} -> {resp.status_code} {message}{hint}")
        return resp

    def public_key(self) -> tuple[str, str]:
        data = self._call("GET", "/actions/secrets/public-key").json()
        return str(data["key_id"]), str(data["key"])

    def sync(self, values: Mapping[str, str]) -> SyncResult:
        """PUT every value; returns which names were created and which replaced."""
        key_id, key = self.public_key()
        created: list[str] = []
        updated: list[str] = []
        for name, value in values.items():
            resp = self._call("PUT", f"/actions/secrets/{quote(name, safe='')}",
                              json={"encrypted_value": seal_for(key, value), "key_id": key_id})
            (created if resp.status_code == 201 else updated).append(name)
        return SyncResult(created, updated)
