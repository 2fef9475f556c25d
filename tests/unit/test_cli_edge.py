"""The CLI's error boundary: an OSError that reaches it is one line and exit 1, never a traceback."""

from __future__ import annotations

import errno

import pytest

from shipyard.cli import main


def test_an_os_error_at_the_edge_is_one_line(monkeypatch: pytest.MonkeyPatch,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    def app(**_: object) -> None:
        raise OSError(errno.ENAMETOOLONG, "File name too long", "/srv/" + "x" * 20)

    monkeypatch.setattr(main, "app", app)
    with pytest.raises(SystemExit) as exit_:
        main.run()
    assert exit_.value.code == 1
    err = capsys.readouterr().err
    assert err.strip().splitlines() == [f"error: File name too long: /srv/{'x' * 20}"]
