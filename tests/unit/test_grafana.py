"""The Grafana dashboard: every expression names metrics shipyard really exports (the API's collector and the
built-in router's exposition) and parses as PromQL (promtool); the layout is sane; the CLI writes it."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

from prometheus_client import generate_latest

from shipyard.api.grafana import dashboard, expressions
from shipyard.api.metrics import registry_for
from shipyard.proxy.metrics import Counters, render_prometheus
from shipyard.store import Store
from shipyard.testing.cli import run_cli
from shipyard.testing.servers import missing_server


class _Router:
    name, unrouted = "api/prod", 0

    def pair_counters(self) -> list[tuple[tuple[str, str], Counters]]:
        return [(("127.0.0.1:9001", "r1"), Counters())]

    def stats(self) -> dict[str, Any]:
        return {"backends": [{"address": "127.0.0.1:9001", "revision": "r1", "in_flight": 0, "open_tunnels": 0,
                              "weight": 100}]}


def exported(tmp_path: Path) -> set[str]:
    with Store.open(f"sqlite:///{tmp_path / 'state.db'}") as store:
        text = generate_latest(registry_for(store)).decode() + render_prometheus([_Router()])
    names = set()
    for line in text.splitlines():
        if line.startswith("# TYPE "):
            name, kind = line.split()[2:4]
            names |= {name, f"{name}_bucket", f"{name}_sum", f"{name}_count"} if kind == "histogram" else {name}
            if kind == "counter" and not name.endswith("_total"):
                names.add(f"{name}_total")     # prometheus_client names the sample <name>_total
        elif line and not line.startswith("#"):
            names.add(re.split(r"[{ ]", line, maxsplit=1)[0])
    return names


def test_every_expression_names_exported_metrics(tmp_path: Path) -> None:
    board = dashboard()
    known = exported(tmp_path)
    used = {m for expr in expressions(board) for m in re.findall(r"\bshipyard_[a-z_]+\b", expr)}
    assert used and used <= known, sorted(used - known)
    # Every exported family is on the board (none forgotten), histograms through their buckets.
    families = {n.removesuffix("_bucket").removesuffix("_sum").removesuffix("_count") for n in known}
    shown = {n.removesuffix("_bucket").removesuffix("_sum").removesuffix("_count") for n in used}
    assert families - shown <= {"shipyard_deployments"}, sorted(families - shown)   # shown as its _total


def test_layout_and_variables() -> None:
    board = dashboard("prom-1")
    ids = [p["id"] for p in board["panels"]]
    assert len(ids) == len(set(ids))
    cells = [(p["gridPos"]["x"], p["gridPos"]["y"]) for p in board["panels"]]
    assert len(cells) == len(set(cells))                              # no two panels on one spot
    assert all(t["datasource"]["uid"] == "prom-1" for p in board["panels"] for t in p["targets"])
    assert [v["name"] for v in board["templating"]["list"]] == ["datasource", "service", "env"]


def test_promtool_parses_every_expression(tmp_path: Path) -> None:
    promtool = shutil.which("promtool")
    if promtool is None:
        missing_server("promtool (Debian's prometheus package) is missing: scripts/bootstrap installs it")
    rules = [{"record": f"shipyard:check_{n}", "expr": expr.replace("$service", "api").replace("$env", "prod")}
             for n, expr in enumerate(expressions(dashboard()))]
    path = tmp_path / "rules.yml"
    path.write_text(json.dumps({"groups": [{"name": "dashboard", "rules": rules}]}))   # JSON is YAML
    done = subprocess.run([promtool, "check", "rules", str(path)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr


def test_the_cli_writes_it(tmp_path: Path) -> None:
    res = run_cli(tmp_path, "grafana", "dashboard", "--out", str(tmp_path / "board.json"),
                  env={"PATH": "/usr/bin:/bin", "NO_COLOR": "1"})
    assert res.returncode == 0, str(res)
    assert json.loads((tmp_path / "board.json").read_text())["uid"] == "shipyard-overview"
    printed = run_cli(tmp_path, "grafana", "dashboard", env={"PATH": "/usr/bin:/bin", "NO_COLOR": "1"})
    assert json.loads(printed.stdout)["title"] == "shipyard"
