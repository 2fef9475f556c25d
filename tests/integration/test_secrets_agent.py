"""The supervisor with values to mask: app output goes through the per-instance log process.

Real processes: the app prints its secret (whole, split across writes with a pause, and at exit on
SIGTERM); the log must show only masks, the app must not see the reserved key, stop semantics hold,
and the log process ends with the app.
"""

from __future__ import annotations

import json
import signal
import sys
import time
from collections.abc import Callable
from pathlib import Path

from shipyard.agent.spec import InstanceSpec
from shipyard.agent.supervisor import Supervisor
from shipyard.secrets.redact import REDACT_ENV

SECRET = "sup3r-s3cret-Value-91"
APP = f"""
import os, signal, sys, time
def bye(*_):
    print("bye with", os.environ["DB_PASSWORD"], flush=True)
    sys.exit(0)
signal.signal(signal.SIGTERM, bye)
print("start", os.environ["DB_PASSWORD"], "redact-key-seen:", "{REDACT_ENV}" in os.environ, flush=True)
sys.stdout.write("split {SECRET[:9]}"); sys.stdout.flush(); time.sleep(0.5)
sys.stdout.write("{SECRET[9:]} done\\n"); sys.stdout.flush()
print("ready", flush=True)
time.sleep(300)
"""


async def until(predicate: Callable[[], bool], what: str, timeout: float = 15.0) -> None:
    import asyncio

    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.02)


async def test_instance_log_is_masked_and_the_log_process_ends_with_the_app(sup: Supervisor, tmp_path: Path) -> None:
    spec = InstanceSpec(service="api", env="stg", revision="c0ffee" * 7, cwd=str(tmp_path),
                        argv=[sys.executable, "-c", APP],
                        environ={"DB_PASSWORD": SECRET, REDACT_ENV: json.dumps([SECRET])})
    rec = await sup.start(spec)
    assert rec.redact == [SECRET] and REDACT_ENV not in rec.environ
    log = Path(rec.log_path)
    await until(lambda: "ready" in log.read_text(), "the app's output")
    logpipe = sup._rt[rec.id].logpipe
    assert logpipe is not None and logpipe.poll() is None
    assert str(SECRET) not in " ".join(logpipe.args)           # type: ignore[arg-type]
    result = await sup.stop(rec.id, timeout=10)
    assert result["signal"] == signal.SIGTERM or result["exit_code"] == 0
    text = log.read_text()
    assert SECRET not in text and SECRET[:9] not in text
    assert "start *** redact-key-seen: False" in text and "split *** done" in text
    assert text.index("bye with ***") < text.index("stopped")  # the app's last words come before the marker
    assert logpipe.poll() is not None                            # it ended with the app


async def test_restart_keeps_masking(sup: Supervisor, tmp_path: Path) -> None:
    script = "import os; print('crash with', os.environ['TOKEN'], flush=True); raise SystemExit(3)"
    spec = InstanceSpec(service="api", env="stg", revision="c0ffee" * 7, cwd=str(tmp_path),
                        argv=[sys.executable, "-c", script],
                        environ={"TOKEN": SECRET, REDACT_ENV: json.dumps([SECRET])})
    rec = await sup.start(spec)
    log = Path(rec.log_path)
    await until(lambda: log.read_text().count("crash with ***") >= 2, "two masked runs")
    await sup.stop(rec.id)
    assert SECRET not in log.read_text()
