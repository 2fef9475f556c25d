"""Benchmark: `shipyard promote dev stg` over N repos behind network latency, vs a sequential shell loop.

    python bench/fleet.py [--repos 20] [--latency-ms 100] [--json]

Set-up (all made and removed here, only on 127.0.0.1): `git daemon` serves bare repos; a small relay (this
file run with --relay, an asyncio TCP proxy) sits in front of it and delays every chunk of bytes by the
latency in each direction, as a WAN link would (the kernel's netem is not available on these machines).
Every clone's `origin` is git://127.0.0.1:<relay>/<repo>.git, so every fetch and push pays the latency for
each protocol round trip.

Measured, each on its own fresh copy of the same repos (dev one commit ahead of stg everywhere):
- shipyard_seconds: `shipyard promote dev stg --yes` at the default --jobs;
- shipyard_all_parallel_seconds: the same with --jobs N;
- single_repo_seconds: shipyard promoting one repo alone;
- sequential_seconds: a bash loop of plain git per repo as the teams' MultiGit scripts do it (pull dev,
  pull stg, merge --no-ff, tag, push the branch, push the tag);
- sequential_minimal_seconds: the tightest by-hand loop (one fetch, merge --no-ff, tag, one push of branch
  and tag together), for reference.
Every figure is the wall time of the whole command, CLI start-up included. Not a test: the numbers depend
on the machine; what matters are the ratios, taken side by side in one run.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from shipyard.ipc import free_port

PYTHON = sys.executable
HERE = Path(__file__).resolve()
SHIPYARD = ["-m", "shipyard.cli.main"]
IDENTITY = {"GIT_AUTHOR_NAME": "bench", "GIT_AUTHOR_EMAIL": "bench@invalid", "GIT_COMMITTER_NAME": "bench",
            "GIT_COMMITTER_EMAIL": "bench@invalid"}
ENV = {**os.environ, **IDENTITY, "GIT_TERMINAL_PROMPT": "0", "NO_COLOR": "1", "TERM": "dumb"}
ENV.pop("CI", None)


# -- the relay ------------------------------------------------------------------------------------------
async def _pump(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, latency: float) -> None:
    """Copy one direction, each chunk delivered `latency` after it arrived (pipelined, not serialized)."""
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[tuple[float, bytes]] = asyncio.Queue()

    async def deliver() -> None:
        while True:
            due, data = await queue.get()
            delay = due - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            if not data:
                with contextlib.suppress(OSError):
                    if writer.can_write_eof():
                        writer.write_eof()
                return
            writer.write(data)
            await writer.drain()

    task = asyncio.ensure_future(deliver())
    try:
        while True:
            data = await reader.read(65536)
            queue.put_nowait((loop.time() + latency, data))
            if not data:
                break
        await task
    except (ConnectionError, OSError):
        task.cancel()


async def _connect(port: int) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """Connect to the daemon, re-trying a connect that is not answered within 50 ms.

    git daemon listens with a backlog of 5; when many clients connect at once the kernel drops the
    overflowing SYNs and would only retry them after 1 s, an artefact of this rig (a git host has a deep
    backlog, and the client's own SYN would pay the latency we add anyway). A fresh SYN gets in at once.
    """
    for _ in range(200):
        try:
            return await asyncio.wait_for(asyncio.open_connection("127.0.0.1", port), 0.05)
        except TimeoutError:
            continue
    raise OSError(f"cannot connect to 127.0.0.1:{port}")


async def relay(listen_port: int, target_port: int, latency: float) -> None:
    async def handle(client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        try:
            server_r, server_w = await _connect(target_port)
        except OSError:
            client_w.close()
            return
        await asyncio.gather(_pump(client_r, server_w, latency), _pump(server_r, client_w, latency),
                             return_exceptions=True)
        for w in (client_w, server_w):
            with contextlib.suppress(Exception):
                w.close()

    server = await asyncio.start_server(handle, "127.0.0.1", listen_port, backlog=256)
    async with server:
        await server.serve_forever()


# -- processes ------------------------------------------------------------------------------------------


def wait_port(port: int, proc: subprocess.Popen[bytes], timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"bench: {proc.args!r} exited with {proc.returncode}")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.2):
            return
        time.sleep(0.05)
    raise SystemExit(f"bench: nothing listens on port {port} after {timeout:g}s")


def stop(proc: subprocess.Popen[bytes]) -> None:
    """Stop a process started in its own session, with whatever it spawned (git daemon's children)."""
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)


def git(cwd: Path, *args: str) -> str:
    proc = subprocess.run(["git", "-c", "init.defaultBranch=main", *args], cwd=cwd, env=ENV, capture_output=True,
                          text=True, timeout=120)
    if proc.returncode != 0:
        raise SystemExit(f"bench: git {' '.join(args)} in {cwd} failed: {proc.stderr.strip()}")
    return proc.stdout.strip()


# -- the repos ------------------------------------------------------------------------------------------
def make_template(root: Path) -> tuple[Path, Path]:
    """A bare repo and a clone of it: main, stg and dev, with dev one commit (a few files) ahead."""
    bare, clone = root / "template.git", root / "template"
    git(root, "init", "--quiet", "--bare", str(bare))
    git(root, "init", "--quiet", str(clone))
    for i in range(20):
        (clone / f"module{i}.py").write_text(f"VALUE = {i}\n" * 50)
    git(clone, "config", "user.name", "bench")
    git(clone, "config", "user.email", "bench@invalid")
    git(clone, "add", "--all")
    git(clone, "commit", "--quiet", "-m", "initial")
    git(clone, "branch", "stg")
    git(clone, "checkout", "--quiet", "-b", "dev")
    (clone / "feature.py").write_text("FEATURE = True\n")
    git(clone, "add", "--all")
    git(clone, "commit", "--quiet", "-m", "feature")
    git(clone, "checkout", "--quiet", "main")
    git(clone, "remote", "add", "origin", str(bare))
    git(clone, "push", "--quiet", "--set-upstream", "origin", "main", "stg", "dev")
    git(clone, "fetch", "--quiet", "origin")
    return bare, clone


def make_scenario(root: Path, name: str, count: int, template: tuple[Path, Path], origins: Path,
                  relay_port: int) -> Path:
    """`count` copies of the template under root/name (clones) and origins/<name>-r<i>.git, plus a config."""
    bare, clone = template
    scenario = root / name
    (scenario / "clones").mkdir(parents=True)
    lines = []
    for i in range(count):
        repo = f"{name}-r{i:02d}"
        shutil.copytree(bare, origins / f"{repo}.git", symlinks=True)
        dest = scenario / "clones" / repo
        shutil.copytree(clone, dest, symlinks=True)
        git(dest, "remote", "set-url", "origin", f"git://127.0.0.1:{relay_port}/{repo}.git")
        lines.append(f"  {repo}: {{url: \"git://127.0.0.1:{relay_port}/{repo}.git\", path: clones/{repo}}}")
    (scenario / "shipyard.yaml").write_text(
        "project: bench\ntimezone: UTC\nrepos:\n" + "\n".join(lines) + "\nenvironments:\n"
        "  dev: {branch: dev, confirm: none}\n"
        '  stg: {branch: stg, promote_from: dev, tag: "stg-deploy-{ts}", confirm: none}\n')
    return scenario


SEQUENTIAL_TEAMS = """set -e
ts=$(date +%Y%m%d-%H%M%S)
for repo in clones/*/; do
  cd "$repo"
  git checkout -q dev && git pull -q --ff-only origin dev
  git checkout -q stg && git pull -q --ff-only origin stg
  git merge -q --no-ff dev -m "promote dev to stg"
  git tag -a "stg-deploy-$ts" -m "promote dev to stg"
  git push -q origin stg
  git push -q origin "stg-deploy-$ts"
  cd - >/dev/null
done
"""

SEQUENTIAL_MINIMAL = """set -e
ts=$(date +%Y%m%d-%H%M%S)
for repo in clones/*/; do
  cd "$repo"
  git fetch -q origin
  git checkout -q -B stg origin/stg
  git merge -q --no-ff origin/dev -m "promote dev to stg"
  git tag -a "stg-deploy-$ts" -m "promote dev to stg"
  git push -q origin stg "stg-deploy-$ts"
  cd - >/dev/null
done
"""


def timed(argv: list[str], cwd: Path) -> float:
    started = time.monotonic()
    proc = subprocess.run(argv, cwd=cwd, env=ENV, capture_output=True, text=True, timeout=900,
                          stdin=subprocess.DEVNULL)
    seconds = time.monotonic() - started
    if proc.returncode != 0:
        raise SystemExit(f"bench: {' '.join(argv[:4])}... failed in {cwd}:\n{proc.stdout}\n{proc.stderr}")
    return seconds


def check_promoted(origins: Path, scenario: str) -> None:
    """Every origin's stg now has dev merged in, and a stg-deploy tag: the work was really done."""
    for origin in sorted(origins.glob(f"{scenario}-r*.git")):
        if git(origin, "rev-list", "--count", "stg..dev") != "0" or not git(origin, "tag", "-l", "stg-deploy-*"):
            raise SystemExit(f"bench: {origin.name}: dev is not promoted to stg after the run")


def run_bench(repos: int, latency_ms: float, default_jobs: int = 4) -> dict[str, Any]:
    root = Path(tempfile.mkdtemp(prefix="shipyard-bench-fleet-"))
    procs: list[subprocess.Popen[bytes]] = []
    try:
        origins = root / "origins"
        origins.mkdir()
        daemon_port, relay_port = free_port(), free_port()
        log = open(root / "daemon.log", "wb")  # noqa: SIM115 - closed with the temp dir
        daemon = subprocess.Popen(["git", "daemon", "--reuseaddr", f"--base-path={origins}", "--export-all",
                                   "--enable=receive-pack", "--listen=127.0.0.1", f"--port={daemon_port}",
                                   "--max-connections=256", "--informative-errors", str(origins)],
                                  stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        procs.append(daemon)
        wait_port(daemon_port, daemon)
        relay_proc = subprocess.Popen([PYTHON, str(HERE), "--relay", str(relay_port), str(daemon_port),
                                       str(latency_ms)], stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        procs.append(relay_proc)
        wait_port(relay_port, relay_proc)
        template = make_template(root)
        scenarios = {name: make_scenario(root, name, count, template, origins, relay_port)
                     for name, count in (("warmup", 1), ("single", 1), ("default", repos), ("all", repos),
                                         ("teams", repos), ("minimal", repos))}
        promote = [PYTHON, *SHIPYARD, "promote", "dev", "stg", "--yes", "--no-deploy"]
        timed(promote, scenarios["warmup"])                # byte-compiles, creates nothing shared
        out: dict[str, Any] = {"repos": repos, "latency_ms": latency_ms, "default_jobs": default_jobs}
        out["shipyard_seconds"] = timed([*promote, "--jobs", str(default_jobs)], scenarios["default"])
        out["shipyard_all_parallel_seconds"] = timed([*promote, "--jobs", str(repos)], scenarios["all"])
        out["sequential_seconds"] = timed(["bash", "-c", SEQUENTIAL_TEAMS], scenarios["teams"])
        out["single_repo_seconds"] = timed(promote, scenarios["single"])
        out["sequential_minimal_seconds"] = timed(["bash", "-c", SEQUENTIAL_MINIMAL], scenarios["minimal"])
        for name in ("single", "default", "all", "teams", "minimal"):
            check_promoted(origins, name)
        out["speedup_vs_sequential"] = round(out["sequential_seconds"] / out["shipyard_seconds"], 2)
        out["all_parallel_vs_single"] = round(out["shipyard_all_parallel_seconds"] / out["single_repo_seconds"], 2)
        for key, value in out.items():
            if key.endswith("_seconds"):
                out[key] = round(value, 3)
        return out
    finally:
        for proc in reversed(procs):
            stop(proc)
        shutil.rmtree(root, ignore_errors=True)


def main() -> None:
    if len(sys.argv) == 5 and sys.argv[1] == "--relay":
        asyncio.run(relay(int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4]) / 1000))
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repos", type=int, default=20)
    parser.add_argument("--latency-ms", type=float, default=100.0)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    result = run_bench(args.repos, args.latency_ms)
    if args.json:
        print(json.dumps(result))
        return
    for key, value in result.items():
        print(f"{key:32} {value}")


if __name__ == "__main__":
    main()
