"""All terminal output goes through here; the only module that imports Rich.

A live display follows a deployment on a terminal; without one (CI, pipes) each event is one plain line,
so logs stay readable and greppable. Everything written passes the process's Redactor (set by the project
once its secrets are resolved), so no secret value is ever printed by accident; only `reveal*` bypass it.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from typing import Any

from rich.cells import cell_len
from rich.console import Console, Group, RenderableType
from rich.live import Live
from rich.padding import Padding
from rich.segment import Segment
from rich.table import Table
from rich.text import Text

from shipyard.cli.layout import plan_columns
from shipyard.secrets.redact import Redactor

_redactor = Redactor()     # the one per process the renderer needs: replaced by use_redactor()


def use_redactor(redactor: Redactor) -> None:
    """Mask the values `redactor` knows (now and as it learns more) in all later output."""
    global _redactor
    _redactor = redactor


def redact(text: str) -> str:
    return _redactor.redact(text)


class _PipeConsole(Console):
    """A Console that, when not writing to a terminal, drops the spaces Rich pads table lines with (noise
    in pipes, files and diffs)."""

    def _render_buffer(self, buffer: Iterable[Segment]) -> str:
        text = super()._render_buffer(buffer)
        if not self.is_terminal and " \n" in text:
            text = "\n".join(line.rstrip(" ") for line in text.split("\n"))
        return text


class _RedactingConsole(_PipeConsole):
    """A Console whose every rendered chunk (prints, tables, live frames) is masked before writing."""

    def _render_buffer(self, buffer: Iterable[Segment]) -> str:
        return _redactor.redact(super()._render_buffer(buffer))


console: Console = _RedactingConsole(highlight=False)
err_console: Console = _RedactingConsole(stderr=True, highlight=False)

STATE_STYLE = {"succeeded": "green", "failed": "red", "ok": "green", "pushed": "green", "completed": "green",
               "nothing": "dim", "rejected": "red", "compensated": "yellow", "partial": "yellow",
               "compensation_failed": "red", "not_pushed": "yellow", "conflict": "red",
               "rolled_back": "yellow", "rolling_back": "yellow",
               "in_progress": "cyan", "queued": "blue", "cancelled": "dim", "running": "cyan",
               "pending": "dim", "skipped": "dim", "healthy": "green", "unhealthy": "red",
               "aborting": "yellow", "unchanged": "dim", "rollback_failed": "red"}


def error(message: str) -> None:
    # soft_wrap: one line whatever the width, so an error stays one greppable line in logs and pipes.
    err_console.print(Text(f"error: {redact(message)}", style="bold red"), soft_wrap=True)


def info(message: str) -> None:
    # markup=False: messages carry names, reasons and hook output, where "[...]" is text, not a style.
    console.print(redact(message), soft_wrap=True, markup=False)


def print_json(data: Any) -> None:
    sys.stdout.write(redact(json.dumps(_redactor.redact_data(data), indent=2, default=_json_default)) + "\n")
    sys.stdout.flush()


def pending(text: str) -> int:
    """How many characters at the end of `text` may be the start of a secret (hold them back in streams)."""
    return _redactor.pending(text)


def plain_lines(lines: Iterable[str]) -> None:
    """Lines of foreign text (instance logs) as they are: no markup, no wrapping, masked, flushed."""
    sys.stdout.write("".join(redact(line) + "\n" for line in lines))
    sys.stdout.flush()


def json_lines(items: Iterable[Any]) -> None:
    """One compact JSON object per line (JSON Lines: a stream a program can read as it comes)."""
    sys.stdout.write("".join(redact(json.dumps(_redactor.redact_data(item), default=_json_default)) + "\n"
                             for item in items))
    sys.stdout.flush()


def note(message: str) -> None:
    """A remark beside a stream on stdout (so it stays out of what a pipe reads)."""
    err_console.print(Text(redact(message), style="dim"), soft_wrap=True)


def reveal(text: str) -> None:
    """Print a secret on purpose (`secrets get`, `env show --reveal`): the one path without masking."""
    sys.stdout.write(text if text.endswith("\n") else text + "\n")
    sys.stdout.flush()


def reveal_json(data: Any) -> None:
    reveal(json.dumps(data, indent=2, default=_json_default))


def reveal_table(title: str | None, columns: Sequence[str], rows: Iterable[Sequence[Any]]) -> None:
    _print_table(_PipeConsole(highlight=False), title, columns, rows, redacted=False)


def _json_default(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    return str(value)


def styled(state: str) -> Text:
    return Text(state, style=STATE_STYLE.get(state, ""))


def ago(when: datetime | None) -> str:
    if when is None:
        return "-"
    secs = (datetime.now(UTC) - when).total_seconds()
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if secs >= size:
            return f"{secs / size:.0f}{unit} ago"
    return f"{secs:.0f}s ago"


def duration(start: datetime | None, end: datetime | None) -> str:
    if start is None:
        return "-"
    secs = ((end or datetime.now(UTC)) - start).total_seconds()
    return f"{secs:.1f}s" if secs < 120 else f"{secs / 60:.1f}m"


# Columns people copy into the next command: never wrapped or cut (see cli/layout.py for the rules).
KEEP_WHOLE = frozenset({"id", "deployment", "promotion", "instance", "revision", "address", "listen", "tag",
                        "last tag", "repo", "branch", "name", "old → new"})


EMPTY = ("", "-")        # cells that say "nothing": left out of the lines under a row


def short_sha(sha: str | None) -> str:
    """A revision as tables show it: git's 8-character abbreviation (accepted by --rev); --json has it all."""
    return (sha or "")[:8] or "-"


def _cell(value: Any, redacted: bool) -> Text:
    text = value if isinstance(value, Text) else Text(str(value))
    if redacted:
        masked = redact(text.plain)
        if masked != text.plain:
            text = Text(masked, style=text.style)
    return text


def _width(text: Text) -> int:
    return max((cell_len(line) for line in text.plain.splitlines()), default=0)


def table_renderable(title: str | None, columns: Sequence[str], rows: Iterable[Sequence[Any]], width: int, *,
                     redacted: bool = True, keep: Iterable[str] = KEEP_WHOLE) -> tuple[RenderableType, int]:
    """The table laid out for `width` columns, and the width of its widest line."""
    kept = set(keep)
    cells = [[_cell(c, redacted) for c in [*row, *[""] * (len(columns) - len(row))]] for row in rows]
    heads = [Text(c) for c in columns]
    natural = [max([_width(heads[i])] + [_width(r[i]) for r in cells]) for i in range(len(columns))]
    lay = plan_columns(natural, [c in kept for c in columns], width)

    def grid(show_header: bool, body: list[list[Text]]) -> Table:
        t = Table(box=None, padding=(0, 1), pad_edge=False, show_edge=False, header_style="bold",
                  show_header=show_header, width=lay.total)
        for i in lay.in_table:
            t.add_column(columns[i], width=lay.widths[i], no_wrap=columns[i] in kept, overflow="fold")
        for r in body:
            t.add_row(*(r[i] for i in lay.in_table))
        return t

    parts: list[RenderableType] = [Text(title, style="bold")] if title else []
    if not lay.below:
        parts.append(grid(True, cells))
    else:
        parts.append(grid(True, []))
        for r in cells:
            parts.append(grid(False, [r]))
            below = [Text.assemble(f"{columns[i]}: ", r[i]) for i in lay.below if r[i].plain.strip() not in EMPTY]
            if below:
                parts.append(Padding(Text(" · ").join(below), (0, 0, 0, 2)))
    return Group(*parts), max(width, lay.total)


def _print_table(target: Console, title: str | None, columns: Sequence[str], rows: Iterable[Sequence[Any]],
                 *, redacted: bool = True) -> None:
    renderable, widest = table_renderable(title, columns, rows, target.width, redacted=redacted)
    # crop=False: when the kept columns alone are wider than the terminal, lines get longer, never cut.
    target.print(renderable, crop=widest <= target.width)


def table(title: str | None, columns: Sequence[str], rows: Iterable[Sequence[Any]]) -> None:
    _print_table(console, title, columns, rows)


class DeployProgress:
    """Listener for engine events: a live step table on a terminal, one line per event elsewhere."""

    def __init__(self, title: str, *, live: bool | None = None, quiet: bool = False) -> None:
        self.title = title
        self.live_mode = console.is_terminal if live is None else live
        self.quiet = quiet
        self.steps: list[list[str]] = []
        self.rollback_steps: list[list[str]] = []
        self.traffic = ""
        self.instances: dict[str, dict[str, Any]] = {}     # address -> {id, revision, health, weight}
        self.last = ""
        self.state = "queued"
        self.started = time.monotonic()
        self._live: Live | None = None

    def __enter__(self) -> DeployProgress:
        if self.live_mode and not self.quiet:
            self._live = Live(self._render(), console=console, refresh_per_second=8, transient=False)
            self._live.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._live is not None:
            self._live.update(self._render())
            self._live.__exit__(None, None, None)

    def __call__(self, kind: str, data: dict[str, Any]) -> None:
        if kind == "deploy.started":
            self.steps = [[d, "pending", ""] for d in data.get("steps", [])]
        elif kind.startswith("step.") and data.get("phase") == "deploy" and data.get("idx", -1) < len(self.steps):
            row = self.steps[data["idx"]]
            row[1] = kind.split(".", 1)[1]
            row[2] = data.get("error") or ""
        elif kind.startswith("step.") and data.get("phase") == "rollback":
            if kind == "step.started":
                self.rollback_steps.append([data.get("description", ""), "running", ""])
            elif self.rollback_steps:
                self.rollback_steps[-1][1] = kind.split(".", 1)[1]
                self.rollback_steps[-1][2] = data.get("error") or ""
        elif kind == "traffic.changed":
            self.traffic = data.get("message", "")
            backends = data.get("backends") or []
            for inst in self.instances.values():
                inst["weight"] = 0
            for b in backends:
                inst = self.instances.setdefault(b["address"], {"id": b.get("instance", ""), "health": "healthy"})
                inst.update(revision=b.get("revision", ""), weight=int(b.get("weight", 0)))
        elif kind == "instance.started":
            self.instances[data["address"]] = {"id": data.get("instance", ""), "revision": data.get("revision", ""),
                                               "health": "starting", "weight": 0}
        elif kind == "health.changed" and data.get("address") in self.instances:
            self.instances[data["address"]]["health"] = data.get("state", "")
        elif kind == "state":
            self.state = data.get("state", self.state)
        self.last = f"{kind} {data.get('message', '')}".strip()
        if self._live is not None:
            self._live.update(self._render())
        elif not self.quiet:
            self._line(kind, data)

    def _line(self, kind: str, data: dict[str, Any]) -> None:
        elapsed = time.monotonic() - self.started
        if kind == "step.started":
            msg = f"step {data['idx'] + 1}: {data.get('description', '')}" if data.get("phase") == "deploy" \
                else f"{data.get('phase')}: {data.get('description', '')}"     # rollback, or finish (cleanup)
        elif kind in ("step.succeeded", "step.failed"):
            if kind == "step.succeeded" and data.get("phase") == "deploy":
                return
            msg = f"{kind.split('.')[1]}: {data.get('error') or ''}".strip(": ")
        elif kind == "state":
            msg = f"state {data.get('state')}" + (f": {data['reason']}" if data.get("reason") else "")
        else:
            msg = f"{kind} {data.get('message', '')}".strip()
        console.print(f"[{elapsed:6.1f}s] {msg}", markup=False, soft_wrap=True)

    def _render(self) -> Group:
        width = console.width
        icon = {"succeeded": "✓", "failed": "✗", "running": "…", "pending": " "}
        rows: list[tuple[Any, ...]] = [
            (str(n), desc, Text(f"{icon.get(state, '')} {state}", style=STATE_STYLE.get(state, "")), note)
            for n, (desc, state, note) in enumerate(self.steps, 1)]
        rows += [("rb", desc, Text(state, style=STATE_STYLE.get(state, "")), note)
                 for desc, state, note in self.rollback_steps]
        parts = [table_renderable(f"{self.title}  [{self.state}]", ["#", "step", "state", "note"], rows, width)[0]]
        if self.instances:
            total = sum(i.get("weight", 0) for i in self.instances.values()) or 1
            parts.append(table_renderable(None, ["instance", "revision", "health", "traffic"], [
                (inst.get("id", ""), short_sha(str(inst.get("revision", ""))),
                 Text(inst.get("health", ""), style=STATE_STYLE.get(inst.get("health", ""), "")),
                 f"{100 * inst.get('weight', 0) / total:.0f}%") for inst in self.instances.values()], width)[0])
        parts.append(Text(f"traffic: {self.traffic or '-'}\n{self.last}  ({time.monotonic() - self.started:.1f}s)",
                          style="dim"))
        return Group(*parts)


class RepoProgress:
    """Listener for multi-repo commands (`repos pull`, `promote`): a live row per repo on a terminal; on
    pipes and in CI one line per repo that finished a push or any step failed, so logs stay short."""

    QUIET_PHASES = ("check", "fetch", "plan", "merge")     # on pipes, only their failures are printed

    def __init__(self, title: str, repos: Sequence[str], *, live: bool | None = None, quiet: bool = False) -> None:
        self.title = title
        self.live_mode = console.is_terminal if live is None else live
        self.quiet = quiet
        self.rows: dict[str, list[str]] = {name: ["", "queued", ""] for name in repos}
        self.started = time.monotonic()
        self._live: Live | None = None

    def __enter__(self) -> RepoProgress:
        if self.live_mode and not self.quiet:
            self._live = Live(self._render(), console=console, refresh_per_second=8, transient=True)
            self._live.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._live is not None:
            self._live.__exit__(None, None, None)
            self._live = None

    def __call__(self, repo: str, state: str, detail: str = "") -> None:
        phase, _, status = state.rpartition(":")
        self.rows[repo] = [phase, status, detail]           # a repo not known yet gets its row now
        if self._live is not None:
            self._live.update(self._render())
        elif not self.quiet and status not in ("queued", "running"):
            if phase in self.QUIET_PHASES and status == "ok":
                return
            elapsed = time.monotonic() - self.started
            what = f"{phase} {status}" if phase else status
            console.print(f"[{elapsed:6.1f}s] {repo}: {what}{': ' + detail if detail else ''}", markup=False,
                          soft_wrap=True)

    def _render(self) -> RenderableType:
        return table_renderable(f"{self.title}  ({time.monotonic() - self.started:.1f}s)",
                                ["repo", "step", "state", "detail"],
                                [(name, phase, Text(status, style=STATE_STYLE.get(status, "")), detail)
                                 for name, (phase, status, detail) in self.rows.items()], console.width)[0]


def repo_lines(lines: Iterable[tuple[str, str]], *, style: str = "red") -> None:
    """`  repo: message` lines (the per-repo part of a refusal or a report), each on one line."""
    for repo, message in lines:
        console.print(Text.assemble(("  " + repo, "bold"), (": " + message, style)), soft_wrap=True)
