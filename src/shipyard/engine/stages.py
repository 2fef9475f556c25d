"""Run the pipeline's own steps: command stages and the vulnerability scan (engine.run calls these).

Both run before any instance starts, so a failure here needs no rollback: the deployment fails and the
service keeps serving what it served. Each raises StageFailed with the output and detail to store with the
step (the journal redacts both, as it does for hooks).

Where a stage runs is planned (Stage.in_release): after `build` in the built release, before it in a fresh
checkout of the revision under <releases>/.pipeline/<service>.<env>/<deployment>, which is removed when the
run's pipeline ends (and any left by a killed run is removed by the next one).
"""

from __future__ import annotations

import datetime as dt
import json
import os
import shutil
import sys
from pathlib import Path
from typing import Any

from shipyard.config.pipeline import Scan
from shipyard.engine.commands import run_command, run_report
from shipyard.engine.settings import HookSpec
from shipyard.errors import StageFailed
from shipyard.pipeline.scan import ReportError, judge, parse, policy_of, unaudited
from shipyard.pipeline.scanner import scan_command
from shipyard.releases.git import GitSource, export_tree

EXPORTED = ".shipyard-checkout"


async def checkout(root: Path, source: GitSource, sha: str, service: str, env: str, deployment: str) -> Path:
    """The fresh checkout stages before `build` run in, made once per deployment; older ones of this
    (service, env) are removed (one run per (service, env) at a time holds the lease)."""
    base = root / ".pipeline" / f"{service}.{env}"
    path = base / deployment
    if (path / EXPORTED).exists():
        return path
    if base.is_dir():
        for old in base.iterdir():
            shutil.rmtree(old, ignore_errors=True)
    base.mkdir(parents=True, exist_ok=True)
    await export_tree(source, sha, path)
    (path / EXPORTED).write_text(sha)
    return path


def drop_checkout(root: Path, service: str, env: str, deployment: str) -> None:
    shutil.rmtree(root / ".pipeline" / f"{service}.{env}" / deployment, ignore_errors=True)


async def run_stage(name: str, spec: HookSpec, *, cwd: Path, env: dict[str, str]) -> dict[str, Any]:
    """A command stage: exit 0 or StageFailed naming the stage, with its output."""
    result = await run_command(spec.command, cwd=cwd, env={**env, "SHIPYARD_STAGE": name}, timeout=spec.timeout)
    detail: dict[str, object] = {"returncode": result.returncode, "seconds": round(result.seconds, 3),
                                 "timed_out": result.timed_out}
    if not result.ok:
        why = (f"timed out after {spec.timeout:g}s (its process group was killed)" if result.timed_out
               else f"exited {result.returncode}")
        raise StageFailed(f"stage {name} {why}: {result.tail(2)}".rstrip(": "), output=result.output,
                          detail=detail)
    return {"output": result.output, **detail}


def _which(env: dict[str, str]) -> Any:
    """A scanner's executable: on the run's PATH, else beside the interpreter running shipyard (a scanner
    installed in shipyard's own virtualenv, which need not be on PATH)."""
    def which(name: str) -> str | None:
        found = shutil.which(name, path=env.get("PATH"))
        if found:
            return found
        beside = Path(sys.executable).parent / name
        return str(beside) if os.access(beside, os.X_OK) else None
    return which


async def run_scan(cfg: Scan | None, *, cwd: Path, env: dict[str, str], revision: str,
                   today: dt.date | None = None) -> dict[str, Any]:
    """Run the scanner, parse its JSON report, judge the findings; StageFailed when any blocks."""
    cfg = cfg or Scan()
    image = cfg.image.replace("{revision}", revision) if cfg.image else None
    cmd = scan_command(cfg.tool, image=image, requirements=cfg.requirements, args=cfg.args,
                       has_file=lambda rel: (cwd / rel).is_file(), which=_which(env))
    result, stdout = await run_report(cmd.argv, cwd=cwd, env=env, timeout=cfg.timeout)
    base: dict[str, Any] = {"tool": cmd.tool, "returncode": result.returncode, "seconds": round(result.seconds, 3)}
    if result.timed_out:
        raise StageFailed(f"scan: {cmd.tool} timed out after {cfg.timeout:g}s", output=result.output, detail=base)
    try:
        report = json.loads(stdout)
        lock = None
        if cmd.lockfile and (cwd / cmd.lockfile).is_file():
            lock = json.loads((cwd / cmd.lockfile).read_text(encoding="utf-8"))
        findings, skipped = parse(cmd.tool, report, lock), unaudited(cmd.tool, report)
    except (ValueError, OSError) as exc:
        said = str(exc) if isinstance(exc, ReportError) else "no JSON report on stdout"
        raise StageFailed(f"scan: {cmd.tool} exited {result.returncode}: {said}: {result.tail(2)}".rstrip(": "),
                          output=result.output + stdout.decode("utf-8", "replace")[-4000:], detail=base) from None
    policy = policy_of(cfg.fail_on, cfg.unknown_severity, cfg.ignore, cfg.unaudited == "block")
    verdict = judge(findings, policy, today or dt.date.today(), skipped)
    detail = {**base, "summary": verdict.summary(), "findings": [j.to_dict() for j in verdict.findings],
              "expired": list(verdict.expired), "unaudited": list(verdict.unaudited), "fail_on": list(cfg.fail_on)}
    output = (result.output.rstrip() + "\n" if result.output.strip() else "") + f"{cmd.tool}: {verdict.summary()}"
    if not verdict.passed:
        raise StageFailed(f"scan ({cmd.tool}): {verdict.reason()}", output=output, detail=detail)
    return {"output": output, **detail}
