"""The tunables of one built-in router, as they cross process boundaries (config -> agent -> router).

Kept as plain data with strict parsing so a bad value from any caller is a ValueError naming the key,
and so what is persisted with a router is exactly what it runs with. The timeouts follow HAProxy's
(`timeout connect/server/http-request/client/http-keep-alive`, `retries`, `retry-on`); docs/router.md
says what each one bounds.
"""

from __future__ import annotations

import ipaddress
import math
from dataclasses import asdict, dataclass, fields
from typing import Any

# Failures after which a request may be sent again (HAProxy's retry-on keywords). A request that may
# have reached a backend (every cause but conn-failure) is only re-sent when its method is idempotent.
RETRY_CAUSES = ("conn-failure", "empty-response", "response-timeout")
SECONDS = ("connect_timeout", "response_timeout", "request_timeout", "client_timeout", "keepalive_timeout",
           "pool_idle_timeout")


@dataclass(frozen=True)
class RouterOptions:
    """Timeouts (seconds), retry policy and trusted proxies of one router."""

    connect_timeout: float = 5.0  # one connection attempt to a backend
    response_timeout: float = 60.0  # backend silent while a response is awaited or streaming -> 504 / cut
    request_timeout: float = 10.0  # a request head must arrive whole within this -> 408
    client_timeout: float = 60.0  # client silent mid-request body, or not reading its response -> 408 / cut
    keepalive_timeout: float = 75.0  # idle client connection between requests -> closed
    pool_idle_timeout: float = 30.0  # idle pooled backend connection -> closed
    retries: int = 3  # further attempts after the first, each on another backend when there is one
    retry_on: tuple[str, ...] = ("conn-failure", "empty-response")
    trusted_proxies: tuple[str, ...] = ()  # CIDRs whose X-Forwarded-* headers are extended, not replaced

    @classmethod
    def from_mapping(cls, raw: Any) -> RouterOptions:
        """Parse JSON-ish input; unknown keys and bad values raise ValueError naming the key."""
        if raw is None:
            return cls()
        if not isinstance(raw, dict):
            raise ValueError("router options must be an object")
        known = {f.name for f in fields(cls)}
        values: dict[str, Any] = {}
        for key, value in raw.items():
            if key == "max_attempts":  # the name before retries (persisted routers still carry it)
                values.setdefault("retries", _integer(key, value, minimum=1) - 1)
            elif key not in known:
                raise ValueError(f"unknown router option {key!r} (known: {', '.join(sorted(known))})")
            elif key in SECONDS:
                values[key] = _seconds(key, value)
            elif key == "retries":
                values[key] = _integer(key, value, minimum=0)
            elif key == "retry_on":
                values[key] = _retry_on(value)
            else:
                values[key] = _networks(key, value)
        return cls(**values)

    def as_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["retry_on"] = list(self.retry_on)
        data["trusted_proxies"] = list(self.trusted_proxies)
        return data


def _number(key: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"router option {key}: a number is required")
    return float(value)


def _seconds(key: str, value: Any) -> float:
    number = _number(key, value)
    if not math.isfinite(number) or number <= 0:
        raise ValueError(f"router option {key}: a number of seconds > 0 is required")
    return number


def _integer(key: str, value: Any, minimum: int) -> int:
    number = _number(key, value)
    if not number.is_integer() or number < minimum or number > 100:
        raise ValueError(f"router option {key}: an integer from {minimum} to 100 is required")
    return int(number)


def _strings(key: str, value: Any) -> list[str]:
    if isinstance(value, str) or not isinstance(value, list | tuple) or not all(isinstance(v, str) for v in value):
        raise ValueError(f"router option {key}: a list of strings is required")
    return list(value)


def _retry_on(value: Any) -> tuple[str, ...]:
    causes = _strings("retry_on", value)
    if causes == ["none"]:
        return ()
    for cause in causes:
        if cause not in RETRY_CAUSES:
            raise ValueError(f"router option retry_on: unknown {cause!r} (known: none, {', '.join(RETRY_CAUSES)})")
    return tuple(dict.fromkeys(causes))


def _networks(key: str, value: Any) -> tuple[str, ...]:
    out: list[str] = []
    for text in _strings(key, value):
        try:
            out.append(str(ipaddress.ip_network(text, strict=False)))
        except ValueError:
            raise ValueError(f"router option {key}: {text!r} is not an IP address or CIDR") from None
    return tuple(out)
