"""Durable notification delivery through a receiver outage.

50 events are written through the Journal (as the engine writes them: event and outbox rows in one
transaction) over the first 5 s, while the webhook receiver is down for the first 10 s (its port closed).
The delivery worker runs throughout with its default retry policy (exponential backoff with jitter).
Counts what arrived, how many arrivals were duplicates (same idempotency key), and how long it took from
the first event until every event had arrived.

    python bench/notify.py [--events 50] [--down 10] [--json]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import tempfile
import time
from pathlib import Path
from typing import Any

from shipyard.config.alerting import Notifications
from shipyard.engine.journal import Journal
from shipyard.notify.worker import Worker
from shipyard.store import Store
from shipyard.store import outbox as ob
from shipyard.store.deployments import create_deployment
from shipyard.testing.receivers import HttpReceiver


async def scenario(events: int, down: float, workdir: Path) -> dict[str, Any]:
    rx = HttpReceiver()
    notifications = Notifications.model_validate({
        "channels": {"hook": {"type": "webhook", "url": f"{rx.url}/hook", "secret": "bench"}},
        "routes": [{"events": ["*"], "to": ["hook"]}]})
    with Store.open(f"sqlite:///{workdir / 'state.db'}") as store:
        with store.session() as s:
            create_deployment(s, deployment_id="deploy-bench", service="api", env="prod", revision="c" * 40,
                              strategy="canary", actor="bench")
        journal = Journal(store, "deploy-bench", "api", "prod", notifications=notifications)
        worker = Worker(store, notifications)
        stop = asyncio.Event()
        t0 = time.monotonic()
        runner = asyncio.create_task(worker.run_forever(stop, idle_poll=0.2))

        async def receiver_comes_back() -> None:
            await asyncio.sleep(max(0.0, t0 + down - time.monotonic()))
            await rx.start()

        back = asyncio.create_task(receiver_comes_back())
        for i in range(events):
            journal.event("deploy.progress", f"event {i}", n=i)
            await asyncio.sleep(5.0 / events)
        deadline = time.monotonic() + 120
        while len(set(rx.keys())) < events and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        done = time.monotonic()
        stop.set()
        await runner
        await back
        await rx.stop()
        with store.session() as s:
            counts = ob.counts(s)
    keys = rx.keys()
    return {"events": events, "delivered": len(set(keys)), "duplicates": rx.duplicates(),
            "seconds_to_deliver_all": round(done - t0, 2), "receiver_down_seconds": down,
            "outbox": counts}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--events", type=int, default=50)
    ap.add_argument("--down", type=float, default=10.0, help="seconds the receiver is down at the start")
    ap.add_argument("--json", action="store_true", help="print one JSON object")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="shipyard-bench-notify-") as tmp:
        result = asyncio.run(scenario(args.events, args.down, Path(tmp)))
    if args.json:
        print(json.dumps(result))
    else:
        for key, value in result.items():
            print(f"{key:>24}: {value}")
    return 0 if result["delivered"] == result["events"] and result["duplicates"] == 0 else 1


if __name__ == "__main__":
    raise SystemExit(main())
