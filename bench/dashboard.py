"""The dashboard's first page over a large history: `/` (the overview) through a real `shipyard serve`,
beside GET /api/v1/status (what the overview's grid is built from) for the ratio.

The history is bench/report.py's (N deployments over 365 days, 5 services x 3 envs, steps for each run
that was not cancelled), filled as bench/api.py fills it, then folded as the daemon's `aggregates` work
folds it at start (`store.folding.fold_closed`). The project declares the same 5 services and 3 envs (local
targets, no agent running: the grid shows what the store and the routers say), so the overview has 15 cells
to fill, each with its serving deployment's commit, plus the approvals waiting, the running deployments
and the ten newest. One approval request waits, so that panel is not empty. Then, with a read token:
- status_ms: GET /api/v1/status (bearer token), best and p50 of --tries;
- overview_server_ms: GET / with the session cookie: the server's time for the whole HTML;
- overview_browser_ms: chromium (Playwright, logged in through the login form once) navigating to / until
  the load event (HTML, the stylesheet and the script);
- overview_over_status: overview_server p50 / status p50.
The overview must stay within 1 s at 1 M deployments: its queries go by index (never a scan of history).

    python bench/dashboard.py [--deployments 100000] [--tries 15] [--json]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from api import serve_process as serving  # noqa: E402
from report import END, ENVS, SERVICES, fill, generate  # noqa: E402

from shipyard.domain.approvals import Policy  # noqa: E402
from shipyard.store import Store  # noqa: E402
from shipyard.store import approvals as aq  # noqa: E402
from shipyard.store import tokens as tq  # noqa: E402
from shipyard.store.folding import fold_closed  # noqa: E402
from shipyard.store.models import Deployment  # noqa: E402
from shipyard.testing.receivers import free_port  # noqa: E402

CHROMIUM = Path("/usr/bin/chromium")


def config(url: str, repo: Path) -> str:
    services = "".join(
        f"  {s}:\n    repo: app\n    run: \"python3 -m http.server {{port}}\"\n"
        f"    deploy:\n      target: {{type: local, instances: 2}}\n"
        f"      router: {{type: builtin, listen: \"127.0.0.1:{free_port()}\"}}\n" for s in SERVICES)
    return (f'project: bench\nstate: "{url}"\nrepos:\n  app: {{url: "{repo}", path: "{repo.parent / "clone"}"}}\n'
            "environments:\n" + "".join(f"  {e}: {{branch: {e}}}\n" for e in ENVS)
            + "services:\n" + services + "serve: {outbox: false}\n")


def summary(samples: list[float]) -> dict[str, float]:
    return {"best": round(min(samples), 1), "p50": round(statistics.median(samples), 1)}


def timed(tries: int, call: Callable[[], None]) -> list[float]:
    call()                                      # warm: the first request opens the database, loads templates
    out = []
    for _ in range(tries):
        t0 = time.perf_counter()
        call()
        out.append((time.perf_counter() - t0) * 1000)
    return out


def browser_load(base: str, token: str, tries: int) -> list[float]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), headless=True,
                                     args=["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"])
        try:
            page = browser.new_context(base_url=base, viewport={"width": 1280, "height": 900}).new_page()
            page.goto("/login")
            page.fill("#token", token)
            page.click("button[type=submit]")
            page.wait_for_url(f"{base}/")
            assert page.locator("table.grid tbody tr").count() == len(SERVICES)

            def load() -> None:
                page.goto("/", wait_until="load")
            return timed(tries, load)
        finally:
            browser.close()


def run(n: int, tries: int) -> dict[str, Any]:
    deps, steps = generate(n)
    out: dict[str, Any] = {"deployments": len(deps), "steps": len(steps)}
    with tempfile.TemporaryDirectory(prefix="shipyard-bench-dash-") as tmp:
        root = Path(tmp)
        (root / "repo").mkdir()
        subprocess.run(["git", "init", "--quiet", "--bare", str(root / "repo")], check=True)
        url = f"sqlite:///{root / 'state.db'}"
        (root / "shipyard.yaml").write_text(config(url, root / "repo"), encoding="utf-8")
        # the newest run of the first pair awaits approval (the panel has one card to draw)
        deps[-1].update(state="awaiting_approval", started_at=None, finished_at=None)
        with Store.open(url) as store:
            t0 = time.perf_counter()
            fill(store, deps, steps)
            out["fill_seconds"] = round(time.perf_counter() - t0, 1)
            with store.session() as s:
                last = s.get(Deployment, deps[-1]["id"])
                assert last is not None
                aq.create_request(s, last.id, service=last.service, env=last.env, requested_by="bench",
                                  policy=Policy(required=1, approvers=None, wait=0.0, timeout=86400.0,
                                                self_approval=False), holder="bench",
                                  now=END - timedelta(minutes=5))
                _, token = tq.create_token(s, name="bench", scopes=["read"], envs=None, actor="bench")
            t0 = time.perf_counter()
            out["folded_days"] = fold_closed(store, now=END).folded
            out["fold_seconds"] = round(time.perf_counter() - t0, 1)
        with serving(root) as base:
            with httpx.Client(base_url=base, timeout=60) as api, \
                    httpx.Client(base_url=base, timeout=60, cookies={"shipyard_session": token}) as web:
                def status() -> None:
                    res = api.get("/api/v1/status", headers={"Authorization": f"Bearer {token}"})
                    assert res.status_code == 200, res.text[:300]

                def overview() -> None:
                    res = web.get("/")
                    assert res.status_code == 200 and "Approvals waiting" in res.text, res.status_code
                    assert deps[-1]["id"] in res.text

                # interleaved, so both see the same cache and the same load on the machine
                st, ov = [], []
                for _ in range(tries):
                    st += timed(1, status)
                    ov += timed(1, overview)
            out["status_ms"], out["overview_server_ms"] = summary(st), summary(ov)
            out["overview_over_status"] = round(statistics.median(ov) / max(statistics.median(st), 0.1), 2)
            if CHROMIUM.exists():
                out["overview_browser_ms"] = summary(browser_load(base, token, tries))
            else:
                out["overview_browser_ms"] = {"skipped": f"no {CHROMIUM}"}
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--deployments", type=int, default=100_000)
    ap.add_argument("--tries", type=int, default=15)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    out = run(args.deployments, args.tries)
    print(json.dumps(out) if args.json else "\n".join(f"{k}: {v}" for k, v in out.items()))


if __name__ == "__main__":
    main()
