"""A Grafana dashboard for shipyard's metrics: the deployment figures of `shipyard serve` (/metrics) and the
built-in router's (the agent's router metrics endpoint). Pure data; `shipyard grafana dashboard` prints it.

Every expression names only metrics shipyard exports (a test checks the names against both exporters and
has promtool parse every expression).
"""

from __future__ import annotations

from typing import Any

UID = "shipyard-overview"


def _panel(n: int, title: str, kind: str, exprs: list[tuple[str, str]], *, unit: str = "short", w: int = 12,
           h: int = 8, x: int = 0, y: int = 0, datasource: dict[str, str]) -> dict[str, Any]:
    return {
        "id": n, "title": title, "type": kind, "datasource": datasource,
        "gridPos": {"h": h, "w": w, "x": x, "y": y},
        "fieldConfig": {"defaults": {"unit": unit}, "overrides": []},
        "targets": [{"refId": chr(ord("A") + i), "expr": expr, "legendFormat": legend, "datasource": datasource}
                    for i, (expr, legend) in enumerate(exprs)],
    }


def panels(datasource: dict[str, str]) -> list[dict[str, Any]]:
    sel = '{service=~"$service", env=~"$env"}'
    router = '{service_env=~"$service/$env"}'
    specs: list[tuple[str, str, list[tuple[str, str]], str]] = [
        ("Deployments per day by outcome", "timeseries",
         [(f"sum by (state) (increase(shipyard_deployments_total{sel}[1d]))", "{{state}}")], "short"),
        ("Success rate (finished deploys, 7 days)", "stat",
         [('sum(increase(shipyard_deployments_total{service=~"$service", env=~"$env", kind="deploy", '
           'state="succeeded"}[7d])) / sum(increase(shipyard_deployments_total{service=~"$service", '
           'env=~"$env", kind="deploy", state=~"succeeded|failed|rolled_back"}[7d]))', "success rate")],
         "percentunit"),
        ("Average deployment duration", "timeseries",
         [(f"sum by (service, env) (rate(shipyard_deployment_duration_seconds_sum{sel}[1d])) / "
           f"sum by (service, env) (rate(shipyard_deployment_duration_seconds_count{sel}[1d]))",
           "{{service}}/{{env}}")], "s"),
        ("Since the last successful deploy", "stat",
         [(f"time() - max by (service, env) (shipyard_last_success_timestamp_seconds{sel})",
           "{{service}}/{{env}}")], "s"),
        ("Running and queued", "timeseries",
         [(f"sum by (service, env) (shipyard_deployments_in_progress{sel})", "running {{service}}/{{env}}"),
          (f"sum by (service, env) (shipyard_queue_length{sel})", "queued {{service}}/{{env}}")], "short"),
        ("Notification outbox", "timeseries",
         [("shipyard_outbox_pending", "pending"), ("shipyard_outbox_failed", "failed")], "short"),
        ("Router requests by revision", "timeseries",
         [(f"sum by (revision) (rate(shipyard_router_requests_total{router}[1m]))", "{{revision}}")], "reqps"),
        ("Router 5xx ratio by revision", "timeseries",
         [(f'sum by (revision) (rate(shipyard_router_responses_total{{service_env=~"$service/$env", code="5xx"}}'
           f"[1m])) / sum by (revision) (rate(shipyard_router_requests_total{router}[1m]))", "{{revision}}")],
         "percentunit"),
        ("Router p95 latency by revision", "timeseries",
         [(f"histogram_quantile(0.95, sum by (revision, le) "
           f"(rate(shipyard_router_request_duration_seconds_bucket{router}[5m])))", "{{revision}}")], "s"),
        ("Traffic weight by backend", "timeseries",
         [(f"shipyard_router_backend_weight{router}", "{{backend}} {{revision}}")], "short"),
        ("Router errors, retries and unrouted", "timeseries",
         [(f"sum(rate(shipyard_router_errors_total{router}[1m]))", "errors"),
          (f"sum(rate(shipyard_router_retries_total{router}[1m]))", "retries"),
          (f"sum(rate(shipyard_router_unrouted_total{router}[1m]))", "unrouted")], "reqps"),
        ("In flight and open tunnels", "timeseries",
         [(f"sum(shipyard_router_in_flight_requests{router})", "in flight"),
          (f"sum(shipyard_router_open_tunnels{router})", "websocket tunnels")], "short"),
    ]
    return [_panel(n + 1, title, kind, exprs, unit=unit, x=12 * (n % 2), y=8 * (n // 2), datasource=datasource)
            for n, (title, kind, exprs, unit) in enumerate(specs)]


def dashboard(datasource_uid: str = "${datasource}") -> dict[str, Any]:
    """The dashboard JSON (Grafana's import format), with a Prometheus datasource variable and service/env
    selectors filled from the metrics themselves."""
    ds = {"type": "prometheus", "uid": datasource_uid}

    def variable(name: str) -> dict[str, Any]:
        return {"name": name, "type": "query", "datasource": ds, "includeAll": True, "multi": True,
                "allValue": ".*", "current": {"text": "All", "value": "$__all"}, "refresh": 2,
                "query": {"query": f"label_values(shipyard_deployments_total, {name})", "refId": name}}

    return {
        "uid": UID, "title": "shipyard", "tags": ["shipyard", "deployments"], "timezone": "browser",
        "schemaVersion": 39, "version": 1, "editable": True, "refresh": "30s",
        "time": {"from": "now-7d", "to": "now"},
        "templating": {"list": [
            {"name": "datasource", "type": "datasource", "query": "prometheus", "current": {}},
            variable("service"), variable("env")]},
        "panels": panels(ds),
    }


def expressions(board: dict[str, Any]) -> list[str]:
    return [t["expr"] for p in board["panels"] for t in p["targets"]]
