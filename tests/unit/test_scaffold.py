"""`shipyard init`'s output: every value it sets says what it does, no silent bake, and .gitignore."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from shipyard.config import load_config, render_init
from shipyard.config.scaffold import GITIGNORE, STATE_DIR, ensure_gitignore

COMMENT = re.compile(r"\s#\s|^#")


def logical_lines(text: str) -> list[str]:
    """Physical lines joined while a flow mapping or list is open (`{` / `[` spanning lines)."""
    out: list[str] = []
    depth, current = 0, ""
    for line in text.splitlines():
        code = "" if line.lstrip().startswith("#") else COMMENT.split(line, maxsplit=1)[0]
        current = f"{current}\n{line}" if depth else line
        depth += code.count("{") + code.count("[") - code.count("}") - code.count("]")
        if depth <= 0:
            out.append(current)
            depth, current = 0, ""
    return out


def unexplained(text: str) -> list[str]:
    """Lines that set a value with no comment on them, right above them, or on their key's line."""
    bad: list[str] = []
    explained_next = False
    for line in logical_lines(text):
        stripped = line.strip()
        if not stripped:
            explained_next = False
            continue
        if stripped.startswith("#"):
            explained_next = True
            continue
        commented = any(COMMENT.search(part) for part in line.splitlines())
        code = COMMENT.split(line.splitlines()[0], maxsplit=1)[0].rstrip()
        if code.endswith(":"):                      # a key whose value is on the next lines
            explained_next = commented
            continue
        if not (commented or explained_next):
            bad.append(stripped)
        explained_next = False
    return bad


def test_every_value_init_sets_is_commented(tmp_path: Path) -> None:
    text = render_init(tmp_path, remote_url="git@github.com:org/app.git")
    assert unexplained(text) == []


def test_the_checker_sees_an_uncommented_value() -> None:
    text = ("# a literal ${ in a comment\na: 1   # fine\nb: 2\n# why c\nc: 3\n"
            "d:   # why\n  {x: 1,\n   y: 2}\ne:\n  f: 4\n")
    assert unexplained(text) == ["b: 2", "f: 4"]


def test_init_sets_no_silent_bake(tmp_path: Path) -> None:
    text = render_init(tmp_path, remote_url="")
    (tmp_path / "shipyard.yaml").write_text(text)
    config = load_config(tmp_path / "shipyard.yaml", environ={})
    service = config.service_for(next(iter(config.services)), "dev")
    assert service.deploy.bake == 0, "a first deploy would wait for the bake without the user knowing why"
    bake = [n for n, line in enumerate(text.splitlines()) if re.match(r"\s*#?\s*bake:", line)]
    assert bake and "every deploy takes at least this long" in " ".join(text.splitlines()[bake[0]:bake[0] + 2])


# ---- .gitignore ---------------------------------------------------------------------------------------

def test_gitignore_is_created_when_missing(tmp_path: Path) -> None:
    assert ensure_gitignore(tmp_path) is True
    lines = (tmp_path / GITIGNORE).read_text().splitlines()
    assert STATE_DIR in lines and lines[0].startswith("#")
    assert ensure_gitignore(tmp_path) is False
    assert (tmp_path / GITIGNORE).read_text().splitlines() == lines


@pytest.mark.parametrize("existing", ["node_modules/", "node_modules/\n", "*.pyc\n\n", "dist\n# note\n"])
def test_gitignore_entry_is_appended_once(tmp_path: Path, existing: str) -> None:
    path = tmp_path / GITIGNORE
    path.write_text(existing)
    assert ensure_gitignore(tmp_path) is True
    text = path.read_text()
    assert text.startswith(existing) and text.endswith(f"{STATE_DIR}\n")
    assert existing.rstrip("\n") + "\n" in text            # the old last line still ends where it did
    assert ensure_gitignore(tmp_path) is False and path.read_text() == text
    assert text.splitlines().count(STATE_DIR) == 1


@pytest.mark.parametrize("entry", [".shipyard/", ".shipyard", "/.shipyard/", "/.shipyard", "  .shipyard/  "])
def test_gitignore_that_already_ignores_the_state_is_left_alone(tmp_path: Path, entry: str) -> None:
    path = tmp_path / GITIGNORE
    path.write_text(f"*.log\n{entry}\n")
    assert ensure_gitignore(tmp_path) is False
    assert path.read_text() == f"*.log\n{entry}\n"
