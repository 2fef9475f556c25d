"""The scan parsers against the scanners' real reports (tests/fixtures/scan/README.md says which are real),
the policy (fail_on, ignore with until, unknown severity, unaudited), and the scanner choice."""

from __future__ import annotations

import datetime as dt
import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from scan_registry import ADVISORIES, VERSIONS, npm_registry
from shipyard.errors import UsageError
from shipyard.pipeline.scan import (
    Finding,
    Ignore,
    Policy,
    ReportError,
    judge,
    parse,
    parse_grype,
    parse_npm_audit,
    parse_pip_audit,
    parse_trivy,
    unaudited,
)
from shipyard.pipeline.scanner import scan_command

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "scan"
TODAY = dt.date(2026, 12, 3)


def load(name: str) -> Any:
    return json.loads((FIXTURES / name).read_text())


def rows(findings: list[Finding]) -> list[tuple[str, str, str, str, str]]:
    return sorted((f.id, f.package, f.installed, f.fixed, f.severity) for f in findings)


def test_pip_audit_report() -> None:
    found = parse_pip_audit(load("pip-audit.json"))
    assert rows(found) == [
        ("GHSA-j8r2-6x86-q33q", "requests", "2.19.1", "2.31.0", "unknown"),
        ("PYSEC-2018-28", "requests", "2.19.1", "2.20.0", "unknown"),
        ("PYSEC-2019-133", "urllib3", "1.24.1", "1.24.2", "unknown")]
    assert "CVE-2018-18074" in next(f for f in found if f.id == "PYSEC-2018-28").aliases
    assert unaudited("pip-audit", load("pip-audit.json")) == [
        "Dependency not found on PyPI and could not be audited: shipyard-internal-lib (0.1.0)"]


def test_pip_audit_unreachable_data_is_unaudited_not_clean() -> None:
    report = load("pip-audit-unaudited.json")        # real: pip-audit here, without its data
    assert parse_pip_audit(report) == []
    skipped = unaudited("pip-audit", report)
    assert len(skipped) == 2 and all("could not be audited" in s for s in skipped)
    verdict = judge([], Policy(), TODAY, skipped)
    assert not verdict.passed and "could not be audited" in verdict.reason()
    assert judge([], Policy(block_unaudited=False), TODAY, skipped).passed


def test_npm_audit_report_with_installed_versions_from_the_lockfile() -> None:
    found = parse_npm_audit(load("npm-audit.json"), load("npm-package-lock.json"))
    assert rows(found) == [
        ("GHSA-35jh-r3h4-6jhm", "lodash", "4.17.15", "lodash@4.17.21", "high"),
        ("GHSA-p6mc-m468-83gm", "lodash", "4.17.15", "lodash@4.17.21", "high"),
        ("GHSA-xvch-5gv4-984h", "minimist", "1.2.0", "minimist@1.2.8", "critical")]
    assert {f.installed for f in parse_npm_audit(load("npm-audit.json"))} == {""}     # no lockfile: unknown
    assert parse_npm_audit(load("npm-audit-clean.json")) == []


def test_npm_audit_error_is_a_report_error() -> None:
    with pytest.raises(ReportError, match="npm audit failed: 404 Not Found"):
        parse_npm_audit(load("npm-audit-error.json"))


def test_trivy_report() -> None:
    assert rows(parse_trivy(load("trivy.json"))) == [
        ("CVE-2011-3374", "apt", "2.6.1", "", "low"),
        ("CVE-2022-40897", "setuptools", "65.5.0", "65.5.1", "medium"),
        ("CVE-2023-30861", "flask", "2.2.2", "2.3.2, 2.2.5", "high"),
        ("CVE-2024-2961", "libc6", "2.36-9+deb12u4", "2.36-9+deb12u7", "high"),
        ("CVE-2099-0001", "somelib", "1.0.0", "", "unknown")]


def test_grype_report() -> None:
    found = parse_grype(load("grype.json"))
    assert rows(found) == [("CVE-2023-29383", "login", "1:4.13+dfsg1-1", "", "low"),
                           ("GHSA-xvch-5gv4-984h", "minimist", "1.2.0", "1.2.6", "critical")]
    assert next(f for f in found if f.package == "minimist").aliases == ("CVE-2021-44906",)


@pytest.mark.parametrize("tool, report", [
    ("pip-audit", {"fixes": []}), ("pip-audit", "text"), ("npm", {"auditReportVersion": 1}), ("npm", []),
    ("trivy", {"SchemaVersion": 1}), ("trivy", {"SchemaVersion": 2, "Results": {"a": 1}}),
    ("grype", {"source": {}}), ("grype", {"matches": [{"vulnerability": "x", "artifact": {}}]}),
    ("bandit", {})])
def test_garbage_reports_are_refused_with_a_reason(tool: str, report: Any) -> None:
    with pytest.raises(ReportError):
        parse(tool, report)


def test_policy_blocks_fail_on_and_treats_unknown_as_configured() -> None:
    found = parse_pip_audit(load("pip-audit.json"))
    assert [j.verdict for j in judge(found, Policy(), TODAY).findings] == ["blocks"] * 3   # unknown -> high
    lenient = judge(found, Policy(unknown_severity="medium"), TODAY)
    assert lenient.passed and {j.verdict for j in lenient.findings} == {"allowed"}
    trivy = judge(parse_trivy(load("trivy.json")), Policy(fail_on=frozenset({"critical"})), TODAY)
    assert trivy.passed and next(j.severity for j in trivy.findings) == "high"


def test_ignore_holds_through_its_until_day_then_blocks_again_and_says_so() -> None:
    found = parse_npm_audit(load("npm-audit.json"))
    ignores = (Ignore("GHSA-xvch-5gv4-984h", TODAY, "no user input reaches minimist"),
               Ignore("1523", TODAY + dt.timedelta(days=30)), Ignore("GHSA-35jh-r3h4-6jhm", TODAY))
    held = judge(found, Policy(ignore=ignores), TODAY)      # `until` is the last day it holds
    assert held.passed and {j.verdict for j in held.findings} == {"ignored"}
    assert "no user input" in next(j.note for j in held.findings if j.finding.package == "minimist")
    later = judge(found, Policy(ignore=ignores), TODAY + dt.timedelta(days=1))
    assert not later.passed
    assert sorted(j.finding.id for j in later.blocking) == ["GHSA-35jh-r3h4-6jhm", "GHSA-xvch-5gv4-984h"]
    assert set(later.expired) == {f"GHSA-xvch-5gv4-984h (expired {TODAY})", f"GHSA-35jh-r3h4-6jhm (expired {TODAY})"}
    assert "expired ignores" in later.reason() and "minimist" in later.reason()


def test_an_alias_matches_an_ignore() -> None:
    found = parse_pip_audit(load("pip-audit.json"))
    verdict = judge(found, Policy(ignore=(Ignore("CVE-2019-11324", TODAY),)), TODAY)
    assert next(j for j in verdict.findings if j.finding.id == "PYSEC-2019-133").verdict == "ignored"


def _which(installed: set[str]) -> Any:
    return lambda name: f"/usr/bin/{name}" if name in installed else None


def test_scanner_choice_and_argv() -> None:
    tree = {"requirements.txt", "package-lock.json"}
    has = tree.__contains__
    pip = scan_command("auto", image=None, requirements="requirements.txt", args=["--disable-pip"], has_file=has,
                       which=_which({"pip-audit", "npm"}))
    assert pip.argv == ["/usr/bin/pip-audit", "-r", "requirements.txt", "-f", "json", "--progress-spinner", "off",
                        "--disable-pip"]
    npm = scan_command("auto", image=None, requirements="requirements.txt", args=[], has_file=has,
                       which=_which({"npm"}))
    assert npm.argv == ["/usr/bin/npm", "audit", "--json"] and npm.lockfile == "package-lock.json"
    img = scan_command("auto", image="api:abc", requirements="r.txt", args=[], has_file=has,
                       which=_which({"grype", "pip-audit"}))
    assert img.argv == ["/usr/bin/grype", "api:abc", "-o", "json", "-q"]
    fs = scan_command("trivy", image=None, requirements="r.txt", args=[], has_file=has, which=_which({"trivy"}))
    assert fs.argv == ["/usr/bin/trivy", "fs", "--format", "json", "--quiet", "."]
    with pytest.raises(UsageError, match="no scanner fits"):
        scan_command("auto", image=None, requirements="requirements.txt", args=[], has_file=lambda _: False,
                     which=_which({"pip-audit", "npm"}))
    with pytest.raises(UsageError, match="trivy is not installed"):
        scan_command("trivy", image=None, requirements="r.txt", args=[], has_file=has, which=_which(set()))


@pytest.mark.skipif(shutil.which("npm") is None, reason="npm is not installed")
def test_npm_audit_real_run(tmp_path: Path) -> None:
    """The real npm audit over the fixture's lockfile, its advisories served on loopback: what it prints
    parses to the same findings as the committed fixture (so the fixture stays what npm prints)."""
    for name in ("package.json", "package-lock.json"):
        shutil.copy(FIXTURES / f"npm-{name}", tmp_path / name)
    with npm_registry(ADVISORIES, VERSIONS) as url:
        env = {**os.environ, "npm_config_registry": url, "npm_config_cache": str(tmp_path / ".npm"),
               "npm_config_update_notifier": "false"}
        proc = subprocess.run(["npm", "audit", "--json"], cwd=tmp_path, env=env, capture_output=True, text=True,
                              timeout=120)
    assert proc.returncode == 1, proc.stderr            # npm exits 1 when it finds anything
    lock = load("npm-package-lock.json")
    assert rows(parse_npm_audit(json.loads(proc.stdout), lock)) == rows(parse_npm_audit(load("npm-audit.json"), lock))
