"""Login for the dashboard: the API token itself, kept in a cookie the page's scripts cannot read.

- POST /login with a token (a form) checks it exactly as the JSON API checks a bearer token, then sets the
  cookie: HttpOnly (no script reads it), SameSite=Strict (no other site's page sends it), Path=/, Secure when
  the request came over https. The token is never put in a URL or a page.
- CSRF: every form carries a token derived from the session's API token (HMAC-SHA256 keyed by it), checked
  in constant time on every POST, together with the Origin's (or, without one, the Referer's) host against
  the Host the request was sent to. The CSRF token is stateless: it survives a restart of the server and is the same on
  every daemon of a fleet, and it reveals nothing of the API token (a one-way MAC). A logout clears the
  cookie; revoking the API token (`shipyard tokens revoke`) ends every session made with it.

Pure functions here; routes.py applies them to requests.
"""

from __future__ import annotations

import hashlib
import hmac
from urllib.parse import urlsplit

COOKIE = "shipyard_session"
CSRF_FIELD = "csrf"
MAX_TOKEN = 512            # a longer "token" is not one of ours: refused before any lookup


def csrf_token(api_token: str) -> str:
    """The CSRF token of the session logged in with `api_token`."""
    return hmac.new(api_token.encode(), b"shipyard-dashboard-csrf-v1", hashlib.sha256).hexdigest()


def csrf_ok(api_token: str | None, given: str | None) -> bool:
    """Whether `given` is the CSRF token of this session (constant-time)."""
    if not api_token or not given:
        return False
    return hmac.compare_digest(csrf_token(api_token), given)


def origin_ok(own_host: str, origin: str | None, referer: str | None) -> bool:
    """A POST must come from the server's own pages: the host of its Origin header (sent by every current
    browser on a POST) equal to the Host it was sent to; without one, the Referer's host. The host, not the
    scheme: behind a TLS-terminating proxy the page is https while this server sees http, and a page on
    another host is what CSRF is. Neither header: refused (a form we serve always gets one of them);
    `Origin: null` (a sandboxed or file page) is refused."""
    if origin is not None:
        return origin != "null" and _host(origin) == own_host.lower()
    if referer:
        return _host(referer) == own_host.lower()
    return False


def _host(url: str) -> str | None:
    try:
        parts = urlsplit(url)
    except ValueError:
        return None
    return parts.netloc.lower() if parts.scheme in ("http", "https") and parts.netloc else None


def cookie_attributes(*, secure: bool) -> dict[str, object]:
    """The session cookie's attributes (Starlette's set_cookie keywords)."""
    return {"httponly": True, "samesite": "strict", "secure": secure, "path": "/"}


def safe_next(target: str | None) -> str:
    """Where to go after logging in: a path on this server only (never `//other.host` or a full URL)."""
    if not target or not target.startswith("/") or target.startswith("//") or "\\" in target:
        return "/"
    parts = urlsplit(target)
    if parts.scheme or parts.netloc:
        return "/"
    return target
