"""Which instances `shipyard logs` shows (log_select.select_instances) and how it prints them (Printer)."""

from __future__ import annotations

import json

import pytest

from shipyard.cli.log_select import Printer, select_instances
from shipyard.errors import UsageError

RECORDS = [
    {"id": "api-b2", "state": "running", "started_at": 20},
    {"id": "api-a1", "state": "running", "started_at": 10},
    {"id": "api-a9", "state": "stopped", "started_at": 5},
]


def test_all_but_the_stopped_ones_oldest_first() -> None:
    assert [r["id"] for r in select_instances(RECORDS, None, "api in stg")] == ["api-a1", "api-b2"]


def test_an_id_or_its_unique_start_in_any_state() -> None:
    assert [r["id"] for r in select_instances(RECORDS, "api-a9", "api in stg")] == ["api-a9"]
    assert [r["id"] for r in select_instances(RECORDS, "api-b", "api in stg")] == ["api-b2"]


def test_unknown_and_ambiguous_ids_are_one_line_usage_errors() -> None:
    with pytest.raises(UsageError, match=r"no instance 'web' of api in stg \(known: api-a1, api-a9, api-b2;"):
        select_instances(RECORDS, "web", "api in stg")
    with pytest.raises(UsageError, match=r"'api-a' is ambiguous among the instances of api in stg: api-a1, api-a9"):
        select_instances(RECORDS, "api-a", "api in stg")


def test_printer_text_prefixed_and_json_lines(capsys: pytest.CaptureFixture[str]) -> None:
    Printer(as_json=False, prefixed=True)("api-a1", ["one", "two"])
    Printer(as_json=False, prefixed=False)("api-a1", ["three"])
    Printer(as_json=False, prefixed=True)("api-a1", [])
    assert capsys.readouterr().out.splitlines() == ["api-a1 | one", "api-a1 | two", "three"]
    Printer(as_json=True, prefixed=True)("api-a1", ["four"])
    assert [json.loads(x) for x in capsys.readouterr().out.splitlines()] == [{"instance": "api-a1", "line": "four"}]
