"""Alarm-driven rollback of a bad canary, measured.

The example API is deployed (v1), then v2 as a canary at 50% traffic. Right after the traffic shift the
new instances are switched to fail a fixed share of requests (`POST /admin/error-rate`). The alarm
`http_5xx_ratio > 0.10, 2 of 3 periods of 1 s, Average` is evaluated on the new revision from the
router's counters; ALARM rolls the deployment back (a traffic flip to the warm old set).

detection_seconds: error onset -> ALARM; rollback_seconds: ALARM -> 100% of traffic on the old revision;
requests_failed_after_rollback: failed requests of the steady load after that moment.

    python bench/alarm_rollback.py [--rps 100] [--error-rate 0.3] [--json]
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
from pathlib import Path

from shipyard.demo.alarm_scenario import run_bad_canary


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rps", type=float, default=100.0, help="offered load during the canary")
    ap.add_argument("--error-rate", type=float, default=0.3, help="share of requests the canary fails")
    ap.add_argument("--json", action="store_true", help="print one JSON object")
    ap.add_argument("--keep", action="store_true", help="keep the workspace (for debugging)")
    args = ap.parse_args()
    root = Path(tempfile.mkdtemp(prefix="shipyard-bench-alarm-"))
    try:
        result = run_bad_canary(root, error_rate=args.error_rate, rps=args.rps)
    finally:
        if not args.keep:
            shutil.rmtree(root, ignore_errors=True)
    if args.json:
        print(json.dumps({k: result[k] for k in ("detection_seconds", "rollback_seconds",
                                                 "requests_failed_after_rollback")} | {"detail": result}))
    else:
        print(json.dumps(result, indent=2))
    return 0 if result["state"] == "rolled_back" else 1


if __name__ == "__main__":
    sys.exit(main())
