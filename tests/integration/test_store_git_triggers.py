"""GitOps records on real SQLite and PostgreSQL: one trigger per (service, env, sha) however many writers
race for it, one use per webhook delivery, and the last tip per (repo, branch)."""

from __future__ import annotations

import threading

from shipyard.store import Store
from shipyard.store import git_triggers as gq

SHA = "c" * 40


def test_one_trigger_per_sha_among_racing_writers(store: Store) -> None:
    won: list[bool] = []
    start = threading.Barrier(8)

    def writer(n: int) -> None:
        start.wait()
        with store.session() as s:
            won.append(gq.claim(s, service="api", env="dev", sha=SHA, source="poll" if n % 2 else "github",
                                repo="api", branch="dev", delivery=f"d{n}"))
    threads = [threading.Thread(target=writer, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert sorted(won) == [False] * 7 + [True]
    with store.session() as s:
        gq.settle(s, service="api", env="dev", sha=SHA, deployment_id="dep-1")
        # Another env or service at the same sha is its own trigger.
        assert gq.claim(s, service="api", env="stg", sha=SHA, source="poll", repo="api", branch="dev")
        assert gq.claim(s, service="web", env="dev", sha=SHA, source="poll", repo="api", branch="dev")
    with store.session() as s:
        row = gq.get(s, "api", "dev", SHA)
        assert row is not None and row.deployment_id == "dep-1" and row.refused is None
        assert len(gq.listed(s)) == 3


def test_deliveries_and_tips(store: Store) -> None:
    with store.session() as s:
        assert gq.first_delivery(s, "github", "abc")
        assert not gq.first_delivery(s, "github", "abc")
        assert gq.first_delivery(s, "gitlab", "abc")            # ids are per provider
        assert gq.tip(s, "api", "dev") is None
        gq.advance(s, "api", "dev", SHA, "poll")
        gq.advance(s, "api", "dev", "d" * 40, "github")
        assert gq.tip(s, "api", "dev") == "d" * 40 and gq.tip(s, "api", "main") is None
