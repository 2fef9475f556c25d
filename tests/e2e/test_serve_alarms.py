"""`shipyard serve`'s alarm monitor: what `shipyard watch` does, for every service and env, all the time.

v1 then v2 are deployed by the CLI; the daemon starts; v2's instances start failing a third of their
requests under a small load through the real router; the monitor's alarm fires on v2's 5xx ratio and it
rolls back to v1 (the previous set, kept warm), recorded with the monitor as the actor. A second daemon on
the same SQLite state says in one line that it serves the API only."""

from __future__ import annotations

import contextlib
import threading

import httpx

from shipyard.demo.workspace import commit_version

from .conftest import E2E, assert_ok, get_version, start_serve, stop_serve, wait_until

ALARMS = """
alarms:
  high_5xx: {metric: http_5xx_ratio, statistic: Average, period: 1s, evaluation_periods: 3,
             datapoints_to_alarm: 2, comparison: ">", threshold: 0.10, treat_missing_data: notBreaching}
serve: {lease_ttl: 3s}
"""


def test_the_daemon_rolls_back_a_release_whose_alarm_fires(new_workspace) -> None:  # type: ignore[no-untyped-def]
    e2e: E2E = new_workspace()
    e2e.edit_config(lambda text: text.replace(
        "      strategy: {type: rolling, batch_size: 1}\n",
        "      strategy: {type: rolling, batch_size: 1}\n      alarms: [high_5xx]\n", 1) + ALARMS)
    assert_ok(e2e.deploy())
    v2 = commit_version(e2e.ws, "api", "2.0.0")
    assert_ok(e2e.deploy())
    assert get_version(e2e.api_port)["version"] == "2.0.0"

    server, _ = start_serve(e2e)
    server.wait_for_line("alarms: running here", 30)
    second, _ = start_serve(e2e)
    stop = threading.Event()
    try:
        failing = [i for i in e2e.agent_instances() if i.get("revision") == v2]
        assert failing, e2e.agent_instances()
        for inst in failing:
            httpx.post(f"http://{inst['address']}/admin/error-rate", content="0.34", timeout=5).raise_for_status()

        def load() -> None:             # ~20 requests a second through the router, until told to stop
            with httpx.Client(timeout=5) as client:
                while not stop.wait(0.05):
                    with contextlib.suppress(httpx.HTTPError):
                        client.get(f"http://127.0.0.1:{e2e.api_port}/version")
        threading.Thread(target=load, daemon=True).start()

        def rolled_back() -> dict[str, object] | None:
            return next((d for d in e2e.deployments() if d["kind"] == "rollback" and d["state"] == "succeeded"),
                        None)
        wait_until(rolled_back, 90, "the alarm monitor's rollback")
        back = rolled_back()
        assert back is not None and back["actor"] == "alarm-monitor", back
        assert get_version(e2e.api_port)["version"] == "1.0.0"
    finally:
        stop.set()
        said_second = stop_serve(second)
        said_first = stop_serve(server)
    assert "on SQLite one daemon works alone" in said_second, said_second
    assert said_second.count("on SQLite one daemon works alone") == 1
    assert "another daemon" not in said_first, said_first
