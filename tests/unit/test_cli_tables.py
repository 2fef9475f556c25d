"""Tables as people read them: ids, revisions and addresses whole at any width, every other text complete.

The column rules are tested on the pure planner (cli/layout.py), then on what render.table really
prints to an 80-column console that is not a terminal (a pipe), and a 40-column one. A grep over the
CLI's sources keeps fixed cuts (`[:60]`) of messages out for good.
"""

from __future__ import annotations

import io
import re
from pathlib import Path

import pytest
from rich.text import Text

from shipyard.cli import layout, render
from shipyard.secrets.redact import Redactor

DEPLOY_IDS = ["deploy-20261122-031502-a1b2c3d4", "deploy-20261122-031502-a1b2c3d4-2",
              "deploy-20261123-235959-0badcafe"]
REASON = ("step 4 (wait until 3 new instance(s) are healthy): instance api-stg-a1b2c3d4-ab12 at "
          "127.0.0.1:45678 did not become healthy within 30s: GET /health answered 500 Internal Server Error")
HISTORY_COLUMNS = ["id", "service/env", "kind", "state", "revision", "strategy", "actor", "when", "took", "reason"]
STATUS_COLUMNS = ["instance", "revision", "address", "state", "health", "traffic", "restarts", "warm until"]


@pytest.fixture
def printed(monkeypatch: pytest.MonkeyPatch) -> dict[str, io.StringIO]:
    """render.console replaced by a pipe-like console (not a terminal) whose width each test sets."""
    out: dict[str, io.StringIO] = {}

    def use(width: int) -> io.StringIO:
        buf = io.StringIO()
        monkeypatch.setattr(render, "console", render._RedactingConsole(file=buf, width=width, highlight=False))
        out["buf"] = buf
        return buf

    monkeypatch.setattr(render, "_redactor", Redactor())
    out["use"] = use  # type: ignore[assignment]
    return out


def _history_rows() -> list[tuple[object, ...]]:
    return [(dep_id, "api/stg", "deploy", render.styled("rolled_back"), "a1b2c3d4", "blue_green", "e2e",
             "12m ago", "41.2s", f"{REASON} (run {n})") for n, dep_id in enumerate(DEPLOY_IDS)]


def _flat(text: str) -> str:
    return " ".join(text.split())


# ---- the planner -----------------------------------------------------------------------------------------

def test_everything_natural_when_it_fits() -> None:
    lay = layout.plan_columns([10, 5, 20], [True, False, False], 80)
    assert lay.widths == [10, 5, 20] and lay.total == 10 + 5 + 20 + 2 * layout.GAP


def test_wrapping_columns_shrink_widest_first_and_never_below_their_floor() -> None:
    lay = layout.plan_columns([31, 8, 100, 60], [True, True, False, False], 120)
    assert lay.widths[:2] == [31, 8]                  # kept columns: exactly their widest cell
    assert lay.total == 120
    assert lay.widths[2] == lay.widths[3] or abs((lay.widths[2] or 0) - (lay.widths[3] or 0)) <= 1
    short = layout.plan_columns([31, 7, 90], [True, False, False], 60)
    assert short.widths[1] == 7                       # a short value (a state) is never wrapped


def test_rightmost_wrapping_columns_go_under_the_row_until_it_fits() -> None:
    lay = layout.plan_columns([31, 11, 6, 11, 8, 10, 3, 7, 5, 200], [c in render.KEEP_WHOLE for c in
                                                                       HISTORY_COLUMNS], 80)
    assert lay.below == [5, 6, 7, 8, 9]               # strategy, actor, when, took, reason
    assert lay.widths[0] == 31 and lay.widths[4] == 8 and lay.total <= 80


def test_kept_columns_wider_than_the_terminal_make_the_table_wider_not_cut() -> None:
    lay = layout.plan_columns([40, 30, 12], [True, True, False], 50)
    assert lay.widths == [40, 30, None] and lay.total == 72


def test_planner_refuses_mismatched_input() -> None:
    with pytest.raises(ValueError):
        layout.plan_columns([1, 2], [True], 80)


# ---- what is printed ----------------------------------------------------------------------------------

@pytest.mark.parametrize("width", [80, 30, 200])
def test_history_table_keeps_ids_whole_and_reasons_complete(printed: dict[str, object], width: int) -> None:
    buf = printed["use"](width)  # type: ignore[operator]
    render.table(None, HISTORY_COLUMNS, _history_rows())
    text = buf.getvalue()
    lines = text.splitlines()
    for dep_id in DEPLOY_IDS:
        assert any(re.search(rf"(^|\s){re.escape(dep_id)}(\s|$)", line) for line in lines), f"{dep_id} cut:\n{text}"
    for n in range(len(DEPLOY_IDS)):
        assert f"{REASON} (run {n})" in _flat(text), f"reason {n} incomplete:\n{text}"
    assert "…" not in text and "..." not in text
    kept = len(DEPLOY_IDS[1]) + layout.GAP + len("revision")
    # Where the kept columns fit, so does every line; where they do not, only they stick out.
    assert max(len(line) for line in lines) <= max(width, kept), text
    assert all(line == line.rstrip() for line in lines), "trailing padding in a pipe"


def test_status_table_at_80_columns_keeps_instance_revision_address(printed: dict[str, object]) -> None:
    buf = printed["use"](80)  # type: ignore[operator]
    rows = [(f"api-stg-a1b2c3d4-ab1{n}", "a1b2c3d4", f"127.0.0.1:4567{n}", render.styled("running"),
             render.styled("unhealthy"), "33.3%", 12, "12:00:01") for n in range(3)]
    render.table("api/stg  serving a1b2c3d4  on 127.0.0.1:8200", STATUS_COLUMNS, rows)
    lines = buf.getvalue().splitlines()
    for n in range(3):
        row = next(line for line in lines if f"api-stg-a1b2c3d4-ab1{n}" in line)
        assert "a1b2c3d4" in row.split() and f"127.0.0.1:4567{n}" in row.split(), row
        assert "unhealthy" in row.split()
    assert _flat(buf.getvalue()).count("restarts: 12") == 3
    assert max(len(line) for line in lines) <= 80


def test_an_overlong_word_folds_instead_of_being_cut(printed: dict[str, object]) -> None:
    buf = printed["use"](60)  # type: ignore[operator]
    path = "/srv/releases/api/" + "x" * 90 + "/bin/start"
    render.table(None, ["id", "error"], [("deploy-20261122-031502-a1b2c3d4", f"cannot run {path}")])
    joined = "".join(buf.getvalue().split())
    assert path in joined and "…" not in buf.getvalue()


def test_secrets_are_masked_before_the_layout(printed: dict[str, object]) -> None:
    buf = printed["use"](80)  # type: ignore[operator]
    render.use_redactor(Redactor(["hunter2-the-password"]))
    render.table(None, ["id", "reason"], [("deploy-1", "login failed for hunter2-the-password")])
    assert "hunter2" not in buf.getvalue() and "***" in buf.getvalue()


def test_styled_cells_keep_their_text() -> None:
    renderable, widest = render.table_renderable(None, ["state"], [(Text("rolled_back", style="red"),)], 80)
    assert widest == 80 and renderable is not None


# ---- no fixed cuts, anywhere in the CLI -----------------------------------------------------------------

CLI_DIR = Path(render.__file__).resolve().parent
FIXED_CUT = re.compile(r"\[\s*:\s*\d{2,}\s*\]|\[\s*-\s*\d{2,}\s*:\s*\]")
# Lists shortened on purpose, each followed by a line saying how many were left out (not text cut).
COUNTED_LISTS = {"promote.py": ["for c in m.commits[:20]:"]}


def test_no_fixed_cuts_of_text_in_cli_sources() -> None:
    found = [f"{path.name}:{n}: {line.strip()}" for path in sorted(CLI_DIR.glob("*.py"))
             for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1)
             if FIXED_CUT.search(line) and line.strip() not in COUNTED_LISTS.get(path.name, [])]
    assert not found, "fixed cuts of printed text (wrap instead; see cli/layout.py):\n" + "\n".join(found)
