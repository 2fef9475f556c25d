"""Benchmark: how long one traffic change through the nginx router takes, and what it costs requests.

    python bench/nginx_swap.py [--swaps 40] [--rps 50] [--json]

A real nginx on loopback (shipyard.testing.nginx) in front of three aiohttp backends; the router swaps the
upstream `--swaps` times between alternating backend sets while a paced client offers `--rps` requests per
second through nginx. One swap is NginxRouter.set_backends: render and write the file, `nginx -t`, `nginx -s
reload`, wait until a new worker answers the new generation and no worker from before the reload still
accepts. Prints the swap time median/p90/max in milliseconds and the requests sent/failed during the swaps.
Not a test: the numbers depend on the machine and on whatever else runs on it.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import time
from typing import Any

from aiohttp import web

from shipyard.demo.load import LoadRunner
from shipyard.routers.base import WeightedBackend
from shipyard.routers.nginx import LocalExecutor, NginxRouter
from shipyard.testing.nginx import nginx_binary, nginx_process


async def backend(name: str) -> tuple[web.AppRunner, str]:
    async def hello(request: web.Request) -> web.Response:
        return web.Response(text=name)

    app = web.Application()
    app.router.add_get("/", hello)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    return runner, f"127.0.0.1:{site._server.sockets[0].getsockname()[1]}"  # type: ignore[union-attr]


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


async def run(swaps: int, rps: int) -> dict[str, Any]:
    binary = nginx_binary()
    if binary is None:
        raise SystemExit("nginx is missing (scripts/bootstrap installs it)")
    started = [await backend(n) for n in ("a", "b", "c")]
    addresses = [address for _, address in started]
    try:
        with nginx_process(binary) as ngx:
            router = NginxRouter(LocalExecutor(), upstream=ngx.upstream, file=ngx.upstream_file, conf=ngx.conf,
                                 status=ngx.status, binary=binary, listen=ngx.listen, timeout=10.0)
            sets = [[addresses[0], addresses[1]], [addresses[1], addresses[2]], [addresses[2]], [addresses[0]]]
            await router.set_backends([WeightedBackend(a, 100, "bench", a) for a in sets[0]])
            load = LoadRunner(f"{ngx.url}/", rps, timeout=5.0).start()
            took: list[float] = []
            try:
                for i in range(swaps):
                    chosen = [WeightedBackend(a, 100, "bench", a) for a in sets[(i + 1) % len(sets)]]
                    t0 = time.perf_counter()
                    await router.set_backends(chosen)
                    took.append((time.perf_counter() - t0) * 1000)
                    await asyncio.sleep(0.1)
            finally:
                result = await asyncio.to_thread(load.stop, 30)
    finally:
        for runner, _ in started:
            await runner.cleanup()
    return {"router": "nginx", "swaps": swaps, "swap_ms_median": round(statistics.median(took), 1),
            "swap_ms_p90": round(percentile(took, 0.9), 1), "swap_ms_max": round(max(took), 1),
            "requests_total": result.total, "requests_failed": result.failed, "offered_rps": rps}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--swaps", type=int, default=40)
    parser.add_argument("--rps", type=int, default=50)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    out = asyncio.run(run(args.swaps, args.rps))
    if args.json:
        print(json.dumps(out))
    else:
        print(f"nginx swap: median {out['swap_ms_median']} ms, p90 {out['swap_ms_p90']} ms, max "
              f"{out['swap_ms_max']} ms over {out['swaps']} swaps; {out['requests_failed']} of "
              f"{out['requests_total']} requests failed at {out['offered_rps']} req/s")


if __name__ == "__main__":
    main()
