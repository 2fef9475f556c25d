"""The promotion records and freezes on both SQLite and PostgreSQL (the `store` fixture runs on each)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from shipyard.store import Store
from shipyard.store import promotions as pq

T0 = datetime(2025, 1, 15, 5, 30, tzinfo=UTC)


def test_promotion_record_round_trip(store: Store) -> None:
    with store.session() as s:
        pq.create_promotion(s, promotion_id="promote-1", kind="promote", source_env="dev", target_env="stg",
                            stamp="20250115-143000", actor="me", message="m\x00", now=T0, repos=[
                                {"repo": "api", "branch": "stg", "old_sha": "a" * 40, "new_sha": "b" * 40,
                                 "tag": "stg-deploy-1", "result": "pending",
                                 "updates": [{"ref": "refs/heads/stg", "old": "a", "new": "b", "lease": False}]},
                                {"repo": "web", "branch": "stg", "old_sha": "c" * 40, "result": "skipped",
                                 "detail": "nothing to promote"}])
        pq.create_promotion(s, promotion_id="rollback-2", kind="rollback", source_env=None, target_env="stg",
                            stamp="20250115-150000", actor="me", message="", rollback_to="stg-deploy-1",
                            now=T0 + timedelta(minutes=30))
    with store.session() as s:
        pq.set_repo_result(s, "promote-1", "api", "pushed", detail="pushed")
        row = pq.set_promotion_state(s, "promote-1", "completed")
        assert row.finished_at is not None and row.message == "m\ufffd"
    with store.session(readonly=True) as s:
        assert [p.id for p in pq.list_promotions(s)] == ["rollback-2", "promote-1"]
        assert [p.id for p in pq.list_promotions(s, env="prod")] == []
        repos = {r.repo: (r.result, r.updates) for r in pq.promotion_repos(s, "promote-1")}
        assert repos["api"][0] == "pushed" and repos["api"][1][0]["ref"] == "refs/heads/stg"
        assert repos["web"] == ("skipped", [])
        found = pq.find_promotion_by_tag(s, "stg", "stg-deploy-1")
        assert found is not None and found.id == "promote-1"
        assert pq.get_promotion(s, "rollback-2").rollback_to == "stg-deploy-1"  # type: ignore[union-attr]


def test_freeze_and_unfreeze(store: Store) -> None:
    with store.session() as s:
        assert pq.active_freeze(s, "prod") is None
        pq.freeze_env(s, "prod", reason="rolled back", actor="me", promotion_id="rollback-1", now=T0)
        pq.freeze_env(s, "prod", reason="again", actor="me", promotion_id="rollback-2", now=T0)
    with store.session() as s:
        active = pq.active_freeze(s, "prod")
        assert active is not None and active.promotion_id == "rollback-2"
        lifted = pq.unfreeze_env(s, "prod", actor="lead")
        assert sorted(r.promotion_id or "" for r in lifted) == ["rollback-1", "rollback-2"]
        assert all(r.lifted_by == "lead" for r in lifted)
    with store.session() as s:
        assert pq.active_freeze(s, "prod") is None and pq.unfreeze_env(s, "prod", actor="x") == []
