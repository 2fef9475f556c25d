"""`--server URL` (or SHIPYARD_SERVER, with SHIPYARD_TOKEN): deploy, rollback, promote, hotfix sync, unfreeze,
cancel, recover, status, history and show go through a `shipyard serve` API instead of the local state
database, so a CI runner needs only a token. The display is the same: the live deploy view is fed from the
deployment's event stream.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from datetime import datetime
from typing import Any

import httpx

from shipyard.errors import ShipyardError, UsageError

SERVER_ENV, TOKEN_ENV = "SHIPYARD_SERVER", "SHIPYARD_TOKEN"
TIMEOUT = 30.0
STREAM_IDLE = 300.0      # seconds without a byte (the server sends a keepalive every 15) before giving up
TIMES = ("created_at", "started_at", "finished_at", "ended_at", "at")


class RemoteError(ShipyardError):
    """The server refused or could not be reached; its one-line reason."""


class Remote:
    def __init__(self, url: str, token: str) -> None:
        self.url, self.token = url.rstrip("/"), token
        self._client = httpx.Client(base_url=self.url, headers={"Authorization": f"Bearer {token}"},
                                    timeout=TIMEOUT)

    def _call(self, method: str, path: str, **kw: Any) -> Any:
        try:
            res = self._client.request(method, path, **kw)
        except httpx.HTTPError as exc:
            raise RemoteError(f"cannot reach the shipyard server at {self.url}: {exc or type(exc).__name__}") \
                from None
        if res.status_code >= 400:
            try:
                why = str(res.json().get("error") or res.text)
            except ValueError:
                why = _first_line(res.text) or res.reason_phrase
            cls = UsageError if res.status_code in (400, 404, 422) else RemoteError
            raise cls(f"{self.url}: {why}")
        return res.json()

    def get(self, path: str, **params: Any) -> Any:
        return _times(self._call("GET", path, params={k: v for k, v in params.items() if v is not None}))

    def post(self, path: str, body: dict[str, Any]) -> Any:
        return self._call("POST", path, json=body)

    def events(self, path: str) -> Iterator[tuple[str, dict[str, Any]]]:
        """(kind, data) of each server-sent event until the stream ends; data as a journal listener sees it."""
        try:
            with self._client.stream("GET", path, timeout=httpx.Timeout(TIMEOUT, read=STREAM_IDLE)) as res:
                if res.status_code >= 400:
                    raise RemoteError(f"{self.url}: {_first_line(res.read().decode(errors='replace'))}")
                kind, data = "", ""
                for line in res.iter_lines():
                    if line.startswith("event: "):
                        kind = line.removeprefix("event: ")
                    elif line.startswith("data: "):
                        data = line.removeprefix("data: ")
                    elif not line and kind:
                        if kind == "end":
                            return
                        event = json.loads(data or "{}")
                        yield kind, {"message": event.get("message", ""), **(event.get("data") or {})}
                        kind, data = "", ""
        except httpx.HTTPError as exc:
            raise RemoteError(f"lost the event stream from {self.url}: {exc or type(exc).__name__}") from None

    def close(self) -> None:
        self._client.close()


def _first_line(text: str) -> str:
    """A body that is not the API's JSON (a proxy's error page): its first non-empty line."""
    return next((line.strip() for line in text.splitlines() if line.strip()), "")


def _times(value: Any) -> Any:
    """The API's ISO times back into datetimes (so the local renderers show them the same)."""
    if isinstance(value, list):
        return [_times(v) for v in value]
    if isinstance(value, dict):
        return {k: (datetime.fromisoformat(v) if k in TIMES and isinstance(v, str) else _times(v))
                for k, v in value.items()}
    return value


def remote() -> Remote | None:
    """The server to go through, or None (work on the local state database)."""
    url = os.environ.get(SERVER_ENV, "").strip()
    if not url:
        return None
    token = os.environ.get(TOKEN_ENV, "").strip()
    if not token:
        raise UsageError(f"--server (or {SERVER_ENV}) needs a token in {TOKEN_ENV} (`shipyard tokens create` on "
                         "the server's machine makes one); a token never goes on the command line")
    if not url.startswith(("http://", "https://")):
        raise UsageError(f"--server {url!r}: give the API's URL, e.g. http://127.0.0.1:8700")
    return Remote(url, token)
