"""The (service, env) lease and its queue on real SQLite and PostgreSQL, including processes racing."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import textwrap
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from shipyard.store import (
    Store,
    current_owner,
    dequeue,
    enqueue,
    get_lease,
    heartbeat,
    lease_is_stale,
    list_leases,
    list_queue,
    queue_heartbeat,
    queue_position,
    release,
    try_acquire,
)

T0 = datetime(2024, 5, 1, 9, 0, tzinfo=UTC)
HOST = socket.gethostname()
ME = current_owner()
FOREIGN = "build-box.invalid:4242:999"  # another host: only expiry can free its lease


def dead_owner() -> str:
    done = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)
    return f"{HOST}:{int(done.stdout)}:1"


def acquire(store: Store, dep: str, owner: str = ME, ttl: float = 30, at: datetime = T0,
            service: str = "api", env: str = "prod") -> bool:
    with store.session() as s:
        return try_acquire(s, service, env, dep, owner, ttl, now=at) is not None


def test_acquire_free_lease(store: Store) -> None:
    with store.session() as s:
        lease = try_acquire(s, "api", "prod", "d1", ME, 30, now=T0)
    assert lease is not None
    assert (lease.deployment_id, lease.owner, lease.acquired_at) == ("d1", ME, T0)
    assert lease.expires_at == T0 + timedelta(seconds=30) and lease.expires_at.tzinfo is UTC
    with store.session() as s:
        held = get_lease(s, "api", "prod")
        assert held is not None and held.deployment_id == "d1"
        assert [(x.service, x.env) for x in list_leases(s)] == [("api", "prod")]
        assert not lease_is_stale(held, now=T0)


def test_contended_lease_is_refused_until_released(store: Store) -> None:
    assert acquire(store, "d1", FOREIGN)
    assert not acquire(store, "d2", ME, at=T0 + timedelta(seconds=10))
    assert acquire(store, "d3", ME, service="web")  # other pairs are independent
    assert acquire(store, "d4", ME, env="dev")
    with store.session() as s:
        assert not release(s, "api", "prod", "d2")  # not the holder: nothing happens
        assert release(s, "api", "prod", "d1")
        assert get_lease(s, "api", "prod") is None
    assert acquire(store, "d2", ME, at=T0 + timedelta(seconds=10))


def test_same_holder_reacquiring_renews(store: Store) -> None:
    assert acquire(store, "d1", ME)
    with store.session() as s:
        again = try_acquire(s, "api", "prod", "d1", ME, 30, now=T0 + timedelta(seconds=20))
    assert again is not None
    assert again.acquired_at == T0 and again.expires_at == T0 + timedelta(seconds=50)


def test_expired_lease_is_taken_over(store: Store) -> None:
    assert acquire(store, "d1", FOREIGN, ttl=30)
    assert not acquire(store, "d2", ME, at=T0 + timedelta(seconds=29))
    with store.session() as s:
        lease = try_acquire(s, "api", "prod", "d2", ME, 30, now=T0 + timedelta(seconds=31))
    assert lease is not None
    assert (lease.deployment_id, lease.owner) == ("d2", ME)
    assert lease.acquired_at == T0 + timedelta(seconds=31)


def test_dead_owner_lease_is_taken_over_before_expiry(store: Store) -> None:
    assert acquire(store, "d1", dead_owner(), ttl=3600)
    with store.session() as s:
        held = get_lease(s, "api", "prod")
        assert held is not None and lease_is_stale(held, now=T0)
    assert acquire(store, "d2", ME, at=T0 + timedelta(seconds=1))


def test_live_local_owner_keeps_lease(store: Store) -> None:
    assert acquire(store, "d1", ME, ttl=3600)
    assert not acquire(store, "d2", "someone-else:1:1", at=T0 + timedelta(seconds=1))


def test_heartbeat_extends_and_reports_loss(store: Store) -> None:
    assert acquire(store, "d1", FOREIGN, ttl=30)
    with store.session() as s:
        assert heartbeat(s, "api", "prod", "d1", 30, now=T0 + timedelta(seconds=25))
    assert not acquire(store, "d2", ME, at=T0 + timedelta(seconds=40))  # extended to 55 s
    assert acquire(store, "d2", ME, at=T0 + timedelta(seconds=56))
    with store.session() as s:
        assert not heartbeat(s, "api", "prod", "d1", 30, now=T0 + timedelta(seconds=57))
        assert not release(s, "api", "prod", "d1")
        held = get_lease(s, "api", "prod")
        assert held is not None and held.deployment_id == "d2"


RACER = textwrap.dedent("""
    import json, sys, time
    from pathlib import Path
    from shipyard.store import Store, current_owner, try_acquire
    url, go, keys, name = sys.argv[1], Path(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
    store = Store.open(url)
    print("ready", flush=True)
    while not go.exists():
        time.sleep(0.001)
    start = float(go.read_text())
    won = []
    for i in range(keys):
        # Every racer tries key i in the same 25 ms slot, so each key is really contended.
        time.sleep(max(0.0, start + i * 0.025 - time.time()))
        with store.session() as s:
            if try_acquire(s, "svc", f"env{i}", name, current_owner(), 60) is not None:
                won.append(i)
    store.close()
    print(json.dumps(won), flush=True)
""")


def test_processes_racing_for_leases_exactly_one_wins(store: Store, db_url: str, tmp_path: Path) -> None:
    """Racers meet free leases (INSERT race), expired ones and dead-owner ones (UPDATE races)."""
    keys, racers = 30, 4
    now = datetime.now(UTC)
    with store.session() as s:
        for i in range(keys):
            if i % 3 == 1:
                try_acquire(s, "svc", f"env{i}", "old", FOREIGN, 1, now=now - timedelta(minutes=5))
            elif i % 3 == 2:
                try_acquire(s, "svc", f"env{i}", "old", dead_owner() if i == 2 else f"{HOST}:0:0", 3600)
    go = tmp_path / "go"
    procs = [subprocess.Popen([sys.executable, "-c", RACER, db_url, str(go), str(keys), f"racer{n}"],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for n in range(racers)]
    try:
        for proc in procs:
            assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
        (tmp_path / "go.tmp").write_text(str(time.time() + 0.2))
        (tmp_path / "go.tmp").rename(go)
        outputs = [proc.communicate(timeout=120) for proc in procs]
    finally:
        for proc in procs:
            proc.kill()
    wins: dict[int, list[str]] = {i: [] for i in range(keys)}
    for n, (proc, (out, err)) in enumerate(zip(procs, outputs, strict=True)):
        assert proc.returncode == 0, err
        for key in json.loads(out):
            wins[key].append(f"racer{n}")
    assert all(len(winners) == 1 for winners in wins.values()), wins
    with store.session() as s:
        for i, winners in wins.items():
            lease = get_lease(s, "svc", f"env{i}")
            assert lease is not None and lease.deployment_id == winners[0]


def test_queue_is_fifo_per_pair(store: Store) -> None:
    with store.session() as s:
        a = enqueue(s, "api", "prod", "d-a", ME, now=T0)
        b = enqueue(s, "api", "prod", "d-b", ME, now=T0 + timedelta(seconds=1))
        other = enqueue(s, "api", "dev", "d-x", ME, now=T0 + timedelta(seconds=2))
        c = enqueue(s, "api", "prod", "d-c", ME, now=T0 + timedelta(seconds=3))
    at = T0 + timedelta(seconds=5)
    with store.session() as s:
        assert [queue_position(s, e, now=at) for e in (a, b, c, other)] == [0, 1, 2, 0]
        assert dequeue(s, a) and not dequeue(s, a)
        assert [queue_position(s, e.id, now=at) for e in (a, b, c)] == [None, 0, 1]
        d = enqueue(s, "api", "prod", "d-d", ME, now=at)
        assert queue_position(s, d, now=at) == 2


def test_enqueue_twice_keeps_place(store: Store) -> None:
    with store.session() as s:
        a = enqueue(s, "api", "prod", "d-a", ME, now=T0)
        enqueue(s, "api", "prod", "d-b", ME, now=T0)
        again = enqueue(s, "api", "prod", "d-a", ME, now=T0 + timedelta(seconds=9))
        assert again.id == a.id and again.heartbeat_at == T0 + timedelta(seconds=9)
        assert queue_position(s, again, now=T0 + timedelta(seconds=10)) == 0


def test_dead_and_silent_entries_are_pruned(store: Store) -> None:
    with store.session() as s:
        dead = enqueue(s, "api", "prod", "d-dead", dead_owner(), now=T0)
        silent = enqueue(s, "api", "prod", "d-silent", FOREIGN, now=T0)
        live = enqueue(s, "api", "prod", "d-live", FOREIGN, now=T0)
        mine = enqueue(s, "api", "prod", "d-mine", ME, now=T0)
    later = T0 + timedelta(seconds=90)
    with store.session() as s:
        assert queue_heartbeat(s, live, now=later - timedelta(seconds=5))
        assert queue_heartbeat(s, mine, now=later - timedelta(seconds=5))
        view = {q.deployment_id: q for q in list_queue(s, "api", "prod", now=later)}
        assert view["d-dead"].stale and view["d-silent"].stale  # shown, not removed, by the listing
        assert (view["d-live"].position, view["d-mine"].position) == (0, 1)
        assert view["d-live"].owner == FOREIGN and view["d-live"].age == timedelta(seconds=90)
    with store.session() as s:
        assert queue_position(s, mine, now=later) == 1
        assert queue_position(s, dead, now=later) is None
        assert queue_position(s, silent, now=later) is None
        assert not queue_heartbeat(s, silent, now=later)  # it must enqueue again
        assert [q.deployment_id for q in list_queue(s, now=later)] == ["d-live", "d-mine"]


def test_list_queue_across_pairs(store: Store) -> None:
    with store.session() as s:
        enqueue(s, "web", "prod", "w1", ME, now=T0)
        enqueue(s, "api", "prod", "a1", ME, now=T0)
        enqueue(s, "api", "prod", "a2", ME, now=T0)
        rows = list_queue(s, now=T0 + timedelta(seconds=1))
    assert [(q.service, q.deployment_id, q.position) for q in rows] == [
        ("api", "a1", 0), ("api", "a2", 1), ("web", "w1", 0)]
    assert all(q.enqueued_at.tzinfo is UTC for q in rows)


def test_wall_clock_defaults_work(store: Store) -> None:
    """Without `now`, times come from the real clock and a fresh lease is not stale."""
    with store.session() as s:
        lease = try_acquire(s, "api", "prod", "d1", ME, 30)
        assert lease is not None and not lease_is_stale(lease)
        entry = enqueue(s, "api", "prod", "d2", ME)
        assert queue_position(s, entry) == 0
    time.sleep(0.01)
    with store.session() as s:
        assert heartbeat(s, "api", "prod", "d1", 30)
        renewed = get_lease(s, "api", "prod")
        assert renewed is not None and renewed.heartbeat_at > lease.heartbeat_at
