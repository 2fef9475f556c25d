"""`python -m shipyard.agent --state-dir DIR`: the agent process (usually spawned by ensure_agent).

Kept free of CLI dependencies (typer, rich): the agent is long-lived and should start fast and small.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from pathlib import Path

from shipyard.errors import AgentError
from shipyard.ipc import loop_factory


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m shipyard.agent", description="shipyard host agent")
    parser.add_argument("--state-dir", required=True, type=Path,
                        help="agent state dir (a project's .shipyard/agent)")
    parser.add_argument("--metrics-listen", metavar="HOST:PORT",
                        help="also serve /metrics over TCP (for Prometheus)")
    parser.add_argument("--keep-stopped", type=int, metavar="N",
                        help="ended instances kept listed per service/env (default 20)")
    parser.add_argument("--keep-stopped-for", type=float, metavar="SECONDS",
                        help="how long ended instances stay listed (default one day)")
    parser.add_argument("--log-level", default="INFO")
    args = parser.parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)
    logging.getLogger("httpx").setLevel(logging.WARNING)     # one line per router status call otherwise

    from shipyard.agent.process import serve

    try:
        with asyncio.Runner(loop_factory=loop_factory()) as runner:
            runner.run(serve(args.state_dir, args.metrics_listen, retention=args.keep_stopped_for,
                             keep_stopped=args.keep_stopped))
    except AgentError as exc:
        print(f"shipyard agent: {exc}", file=sys.stderr)
        return 1
    except OSError as exc:
        print(f"shipyard agent: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
