"""The one place argv becomes a remote command line: what a POSIX shell parses back is the argv."""

from __future__ import annotations

import shlex
import subprocess

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from shipyard.ssh.remote import command_line

HOSTILE = ["a b", "it's", '"', "'", "$(touch /tmp/x)", "`id`", "; rm -rf /", "a\nb", "*", "", "-n", "\\", "${HOME}",
           "|", "&&", ">out", "#comment", "~", "\t", "ü"]


def sh_argv(line: str) -> list[str]:
    """What /bin/sh makes of `line` (as sshd runs it through the login shell), via printf %s\\0."""
    out = subprocess.run(["sh", "-c", f"printf '%s\\0' {line}"], capture_output=True, check=True, timeout=10).stdout
    return out.decode().split("\0")[:-1]


def test_hostile_arguments_survive_a_real_shell() -> None:
    line = command_line(["echo", *HOSTILE])
    assert shlex.split(line) == ["echo", *HOSTILE]
    assert sh_argv(line) == ["echo", *HOSTILE]


@settings(max_examples=60, deadline=None)
@given(st.lists(st.text(alphabet=st.characters(blacklist_characters="\0", blacklist_categories=("Cs",))),
                min_size=1, max_size=5))
def test_any_argv_round_trips(argv: list[str]) -> None:
    assert sh_argv(command_line(argv)) == argv


def test_env_goes_through_env_and_is_quoted_too() -> None:
    line = command_line(["printenv", "X"], {"X": "$(id); 'q'"})
    assert sh_argv(line) == ["env", "--", "X=$(id); 'q'", "printenv", "X"]
    assert subprocess.run(["sh", "-c", line], capture_output=True, text=True, timeout=10).stdout == "$(id); 'q'\n"


@pytest.mark.parametrize(("argv", "env", "message"), [
    ("ls -la", None, "list of arguments"),
    ([], None, "empty command"),
    (["echo", "a\0b"], None, "NUL"),
    (["echo"], {"BAD NAME": "x"}, "environment variable name"),
    (["A=1"], {"B": "2"}, "holds '='"),
])
def test_what_cannot_be_an_argv_is_refused(argv: object, env: dict[str, str] | None, message: str) -> None:
    with pytest.raises((TypeError, ValueError), match=message):
        command_line(argv, env)  # type: ignore[arg-type]
