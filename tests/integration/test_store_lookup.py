"""`find_by_prefix`: a deployment or promotion found by the start of its id, on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from shipyard.store import Store, create_deployment
from shipyard.store import promotions as pq
from shipyard.store.lookup import DEPLOYMENT, PROMOTION, SHOWN_CANDIDATES, find_by_prefix

T0 = datetime(2026, 11, 22, 3, 15, 2, tzinfo=UTC)
SHA = "a1b2c3d4" + "0" * 32


def _deploy(store: Store, when: datetime, sha: str = SHA) -> str:
    with store.session() as s:
        return create_deployment(s, service="api", env="stg", revision=sha, strategy="rolling", actor="t",
                                 now=when).id


def _promote(store: Store, promotion_id: str) -> None:
    with store.session() as s:
        pq.create_promotion(s, promotion_id=promotion_id, kind="promote", source_env="dev", target_env="stg",
                            stamp="20261122-031502", actor="t", message="m")


def test_unique_prefix_complete_id_and_ambiguity(store: Store) -> None:
    first = _deploy(store, T0)                          # deploy-20261122-031502-a1b2c3d4
    second = _deploy(store, T0)                         # the same second and sha: ...-a1b2c3d4-2
    other = _deploy(store, T0 + timedelta(days=1), "0badcafe" + "0" * 32)
    _promote(store, "promote-20261122-031502-9f3e")
    with store.session() as s:
        assert find_by_prefix(s, first).found == (DEPLOYMENT, first)        # complete id wins over -2
        assert find_by_prefix(s, second).found == (DEPLOYMENT, second)
        assert find_by_prefix(s, "deploy-20261123").found == (DEPLOYMENT, other)
        assert find_by_prefix(s, "promote-2026").found == (PROMOTION, "promote-20261122-031502-9f3e")
        amb = find_by_prefix(s, "deploy-20261122")
        assert amb.found is None and [i for _, i in amb.candidates] == [first, second] and amb.more == 0
        assert find_by_prefix(s, "nope").found is None and not find_by_prefix(s, "nope").candidates
        assert not find_by_prefix(s, "DEPLOY-2026").candidates             # case matters, as in the ids
        assert not find_by_prefix(s, "deploy-2026112_").candidates          # LIKE wildcards are literal
        assert not find_by_prefix(s, "deploy-2026%").candidates


def test_many_candidates_are_counted_not_all_listed(store: Store) -> None:
    made = [_deploy(store, T0 + timedelta(seconds=n)) for n in range(SHOWN_CANDIDATES + 3)]
    with store.session() as s:
        amb = find_by_prefix(s, "deploy-")
    assert [i for _, i in amb.candidates] == sorted(made)[:SHOWN_CANDIDATES]
    assert amb.more == 3
