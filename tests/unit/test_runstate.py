"""The routing weights and the persisted run context are pure: check them as data."""

from __future__ import annotations

import pytest

from shipyard.domain.types import Instance
from shipyard.engine.runstate import RunContext, weights


def inst(n: int, rev: str) -> Instance:
    return Instance(id=f"i{n}", service="api", env="stg", revision=rev, address=f"127.0.0.1:{9000 + n}")


@pytest.mark.parametrize("pct,new,old", [(10, 1, 3), (50, 2, 3), (25, 1, 1), (1, 3, 2)])
def test_new_group_gets_exactly_its_percentage(pct: int, new: int, old: int) -> None:
    ws = weights([inst(i, "b") for i in range(new)], [inst(10 + i, "a") for i in range(old)], pct)
    total = sum(b.weight for b in ws)
    share = sum(b.weight for b in ws if b.revision == "b") / total
    assert share == pytest.approx(pct / 100)
    assert len({b.weight for b in ws if b.revision == "b"}) == 1, "even split inside a group"


def test_equal_shares_and_full_switch() -> None:
    news, olds = [inst(1, "b"), inst(2, "b")], [inst(3, "a")]
    assert {b.weight for b in weights(news, olds, None)} == {100}
    full = weights(news, olds, 100)
    assert {b.revision for b in full} == {"b"}, "old instances leave the set at 100%"
    assert [b.instance for b in weights([], olds, None)] == ["i3"]


def test_context_round_trips_and_tolerates_missing_keys() -> None:
    ctx = RunContext(old=["a"], old_revision="r", new=["b"], routed=["x"], to_drain=["y"])
    assert RunContext.from_dict(ctx.to_dict()) == ctx
    assert RunContext.from_dict(None) == RunContext()
    assert RunContext.from_dict({"old": ["a"]}).old == ["a"]
