"""Promotion time, deploy tag names and promotion ids: one timestamp per promotion, in the config's zone.

Every repo of one promotion gets the same tag name (`stg-deploy-20250115-143022`), so "what was in stg at
14:30" is one name across the fleet, and the pipelines that trigger on `deploy-*` tags fire together.
"""

from __future__ import annotations

import re
import secrets
import zoneinfo
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta

TS_FORMAT = "%Y%m%d-%H%M%S"
_TS_RX = r"(?P<ts>\d{8}-\d{6})"
_FIELD = re.compile(r"\{(ts|env|sha)\}")


def promotion_time(timezone: str, now: datetime | None = None) -> datetime:
    """Now (or `now`) as an aware datetime in the config's time zone."""
    return (now or datetime.now(UTC)).astimezone(zoneinfo.ZoneInfo(timezone))


def stamp(when: datetime) -> str:
    """`YYYYMMDD-HHMMSS` as it appears in tags and ids."""
    return when.strftime(TS_FORMAT)


def promotion_id(kind: str, when: datetime) -> str:
    """`promote-YYYYMMDD-HHMMSS-<4 hex>` (or hotfix-/rollback-): sortable, and two in one second differ."""
    return f"{kind}-{stamp(when)}-{secrets.token_hex(2)}"


def tag_name(template: str, ts: str, env: str, sha: str | None = None) -> str:
    """Fill `{ts}` and `{env}`; `{sha}` (first 8 of the tagged commit) only when `sha` is given."""
    values = {"ts": ts, "env": env}
    if sha is not None:
        values["sha"] = sha[:8]
    return _FIELD.sub(lambda m: values.get(m.group(1), m.group(0)), template)


def tag_pattern(template: str, env: str) -> re.Pattern[str]:
    """A regex matching every tag the template makes for `env`; group `ts` holds its timestamp."""
    out, pos = "", 0
    for m in _FIELD.finditer(template):
        out += re.escape(template[pos:m.start()])
        out += {"ts": _TS_RX, "env": re.escape(env), "sha": "[0-9a-f]{4,40}"}[m.group(1)]
        pos = m.end()
    return re.compile(out + re.escape(template[pos:]))


def tag_glob(template: str, env: str) -> str:
    """A `git for-each-ref` pattern under refs/tags/ for the template's tags (`*` for ts and sha)."""
    return "refs/tags/" + _FIELD.sub(lambda m: env if m.group(1) == "env" else "*", template)


def tag_stamp(tag: str, template: str | None, env: str) -> str | None:
    """The `YYYYMMDD-HHMMSS` inside `tag` if it was made from `template`, else None."""
    if not template or "{ts}" not in template:
        return None
    m = tag_pattern(template, env).fullmatch(tag)
    return m.group("ts") if m else None


def free_time(when: datetime, template: str | None, env: str, taken: Iterable[str]) -> datetime:
    """`when`, or the first second after it whose tag name no repo has yet: a promotion (or a rollback in
    an emergency) in the same second as the previous one gets the next second's name instead of failing."""
    if not template or "{ts}" not in template:
        return when
    names = set(taken)
    while tag_name(template, stamp(when), env) in names:
        when += timedelta(seconds=1)
    return when


def parse_stamp(ts: str, timezone: str) -> datetime:
    """The promotion time back from its stamp: a resumed promotion dates its commits and tags as the
    original did, so a rebuilt merge commit is the very same object (same sha) as the one first planned."""
    return datetime.strptime(ts, TS_FORMAT).replace(tzinfo=zoneinfo.ZoneInfo(timezone))
