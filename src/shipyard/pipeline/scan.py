"""Vulnerability reports in, findings out; and the policy that says whether findings block a deploy.

Everything here is pure: a parser takes the JSON a scanner printed (already decoded) and returns Findings;
`judge` takes findings, the policy and today's date and returns a Verdict. The engine runs the scanner
(shipyard.pipeline.scanner builds its argv) and stores the verdict with the deployment.

Severity, said once: each scanner's words map onto critical/high/medium/low/unknown (npm's "moderate" is
medium, "info" low; grype's "Negligible" low). pip-audit's JSON carries no severity at all (its data
sources, PyPI and OSV, give none per vulnerability in that report), so every pip-audit finding has
severity "unknown", and an unknown severity is judged as the policy's `unknown_severity` (default high,
which blocks under the default fail_on). A team that wants pip-audit findings to inform rather than block
sets `unknown_severity: medium`, or ignores findings one by one with a date.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

SEVERITY_ORDER = ("critical", "high", "medium", "low", "unknown")
_WORDS = {"critical": "critical", "high": "high", "important": "high", "moderate": "medium", "medium": "medium",
          "low": "low", "info": "low", "negligible": "low", "unknown": "unknown"}


class ReportError(ValueError):
    """The scanner's output is not a report of the kind expected (the message says what is wrong)."""


@dataclass(frozen=True)
class Finding:
    id: str                         # the advisory's own id (CVE-, GHSA-, PYSEC-...)
    package: str
    installed: str                  # the installed version ("" when the report does not say)
    fixed: str                      # version(s) with the fix, "" when none is known
    severity: str                   # one of SEVERITY_ORDER, as the report says (unknown when it says nothing)
    title: str = ""
    aliases: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["aliases"] = list(self.aliases)
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Finding:
        return cls(**{**data, "aliases": tuple(data.get("aliases", ()))})


@dataclass(frozen=True)
class Ignore:
    id: str
    until: dt.date
    reason: str = ""


@dataclass(frozen=True)
class Policy:
    fail_on: frozenset[str] = frozenset({"critical", "high"})
    unknown_severity: str = "high"
    ignore: tuple[Ignore, ...] = ()
    block_unaudited: bool = True      # a dependency the scanner could not check blocks (no silent pass)


@dataclass(frozen=True)
class Judged:
    finding: Finding
    severity: str                   # what the policy judged it as (unknown replaced by unknown_severity)
    verdict: str                    # "blocks", "ignored" (an ignore holds), "allowed" (severity below fail_on)
    note: str = ""                  # the ignore's reason, or that an ignore expired

    def to_dict(self) -> dict[str, Any]:
        return {**self.finding.to_dict(), "judged_as": self.severity, "verdict": self.verdict, "note": self.note}


@dataclass(frozen=True)
class Verdict:
    findings: tuple[Judged, ...] = ()
    expired: tuple[str, ...] = field(default=())   # "ID (expired YYYY-MM-DD)" for each ignore past its date
    unaudited: tuple[str, ...] = ()                # dependencies the scanner could not check, with why
    block_unaudited: bool = True

    @property
    def blocking(self) -> list[Judged]:
        return [j for j in self.findings if j.verdict == "blocks"]

    @property
    def passed(self) -> bool:
        return not self.blocking and not (self.unaudited and self.block_unaudited)

    def summary(self) -> str:
        counts: dict[str, int] = {}
        for j in self.findings:
            counts[j.verdict] = counts.get(j.verdict, 0) + 1
        said = ", ".join(f"{n} {v}" for v, n in sorted(counts.items())) or "no findings"
        if self.unaudited:
            said += f"; {len(self.unaudited)} not audited"
        return said + (f"; expired ignores: {', '.join(self.expired)}" if self.expired else "")

    def reason(self) -> str:
        """Why the gate refused, in one line naming the blocking findings."""
        if not self.blocking:
            return (f"{len(self.unaudited)} dependencies could not be audited ({'; '.join(self.unaudited[:2])}); "
                    "set scan.unaudited: allow to let that pass")
        shown = [f"{j.finding.id} ({j.severity}) in {j.finding.package} {j.finding.installed}".rstrip()
                 for j in self.blocking[:3]]
        more = f" and {len(self.blocking) - 3} more" if len(self.blocking) > 3 else ""
        text = f"{len(self.blocking)} blocking finding{'s' if len(self.blocking) != 1 else ''}: " \
               f"{', '.join(shown)}{more}"
        return text + (f" (expired ignores: {', '.join(self.expired)})" if self.expired else "")


def severity(word: object) -> str:
    return _WORDS.get(str(word or "unknown").strip().lower(), "unknown")


def judge(findings: Iterable[Finding], policy: Policy, today: dt.date, unaudited: Sequence[str] = ()) -> Verdict:
    """Each finding: ignored while a matching ignore's `until` is today or later, else blocking when its
    severity (unknown replaced by `unknown_severity`) is in fail_on, else allowed. An expired ignore does
    not ignore, and is named in the verdict so the reason says why a finding blocks again. `unaudited`
    (dependencies the scanner skipped) fails the verdict unless the policy allows them."""
    by_id: dict[str, Ignore] = {}
    for ign in policy.ignore:           # one id twice: the later date wins
        if ign.id not in by_id or ign.until > by_id[ign.id].until:
            by_id[ign.id] = ign
    judged: list[Judged] = []
    expired: list[str] = []
    for f in findings:
        sev = policy.unknown_severity if f.severity == "unknown" else f.severity
        match = next((by_id[i] for i in (f.id, *f.aliases) if i in by_id), None)
        if match is not None and match.until >= today:
            judged.append(Judged(f, sev, "ignored", f"ignored until {match.until}: {match.reason}".rstrip(": ")))
            continue
        note = ""
        if match is not None:
            note = f"ignore expired {match.until}"
            label = f"{match.id} (expired {match.until})"
            if label not in expired:
                expired.append(label)
        judged.append(Judged(f, sev, "blocks" if sev in policy.fail_on else "allowed", note))
    judged.sort(key=lambda j: (("blocks", "allowed", "ignored").index(j.verdict), SEVERITY_ORDER.index(j.severity),
                               j.finding.package, j.finding.id))
    return Verdict(tuple(judged), tuple(expired), tuple(unaudited), policy.block_unaudited)


# ---- parsers -------------------------------------------------------------------------------------------

def _obj(value: object, what: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise ReportError(f"{what}: expected an object, got {type(value).__name__}")
    return value


def _list(value: object, what: str) -> list[Any]:
    if value is None:
        return []
    if not isinstance(value, list):
        raise ReportError(f"{what}: expected a list, got {type(value).__name__}")
    return value


def _text(value: object) -> str:
    return "" if value is None else str(value)


def parse_pip_audit(report: object) -> list[Finding]:
    """pip-audit -f json: {"dependencies": [{"name", "version", "vulns": [{"id", "fix_versions", "aliases",
    "description"}]}], "fixes": [...]} (older versions print the dependency list bare). No severity: see
    the module docstring."""
    deps = report if isinstance(report, list) else _obj(report, "pip-audit report").get("dependencies")
    if deps is None:
        raise ReportError("pip-audit report: no `dependencies` list (is this pip-audit -f json output?)")
    out: list[Finding] = []
    for n, dep in enumerate(_list(deps, "pip-audit dependencies")):
        dep = _obj(dep, f"pip-audit dependency {n}")
        for v in _list(dep.get("vulns"), f"vulns of {dep.get('name')}"):
            v = _obj(v, f"a vuln of {dep.get('name')}")
            out.append(Finding(id=_text(v.get("id")), package=_text(dep.get("name")),
                               installed=_text(dep.get("version")),
                               fixed=", ".join(map(str, _list(v.get("fix_versions"), "fix_versions"))),
                               severity="unknown", title=_first_line(_text(v.get("description"))),
                               aliases=tuple(map(str, _list(v.get("aliases"), "aliases")))))
    return out


def parse_npm_audit(report: object, lock: object = None) -> list[Finding]:
    """npm audit --json (auditReportVersion 2, npm 7 and later). The report names vulnerable packages and
    their advisories but not installed versions: those come from package-lock.json (`lock`, decoded) when
    given. `fixAvailable` names the package to update, which may be a parent of the vulnerable one."""
    data = _obj(report, "npm audit report")
    if "error" in data and "vulnerabilities" not in data:
        err = data["error"] if isinstance(data["error"], dict) else {"summary": data["error"]}
        raise ReportError(f"npm audit failed: {_text(err.get('summary')) or _text(data.get('message'))}")
    if data.get("auditReportVersion") != 2:
        raise ReportError("npm audit report: auditReportVersion 2 expected (npm 7 or later)")
    installed = _lock_versions(lock)
    out: list[Finding] = []
    for name, vuln in _obj(data.get("vulnerabilities", {}), "npm vulnerabilities").items():
        vuln = _obj(vuln, f"npm vulnerability {name}")
        fix = vuln.get("fixAvailable")
        fixed = (f"{fix.get('name')}@{fix.get('version')}" if isinstance(fix, dict)
                 else "npm audit fix" if fix is True else "")
        versions = sorted({installed[node] for node in _list(vuln.get("nodes"), "nodes") if node in installed})
        for via in _list(vuln.get("via"), f"via of {name}"):
            if not isinstance(via, dict):
                continue            # a string: the vulnerability comes through that dependency, reported there
            url = _text(via.get("url"))
            adv = url.rstrip("/").rsplit("/", 1)[-1] if "/advisories/" in url else _text(via.get("source"))
            out.append(Finding(id=adv, package=_text(via.get("name") or name), installed=", ".join(versions),
                               fixed=fixed, severity=severity(via.get("severity")), title=_text(via.get("title")),
                               aliases=(_text(via.get("source")),) if via.get("source") is not None else ()))
    return out


def _lock_versions(lock: object) -> dict[str, str]:
    if not isinstance(lock, dict) or not isinstance(lock.get("packages"), dict):
        return {}
    return {path: _text(meta.get("version")) for path, meta in lock["packages"].items()
            if isinstance(meta, dict) and path}


def parse_trivy(report: object) -> list[Finding]:
    """trivy (image|fs) -f json, SchemaVersion 2: Results[].Vulnerabilities[] with VulnerabilityID, PkgName,
    InstalledVersion, FixedVersion, Severity."""
    data = _obj(report, "trivy report")
    if data.get("SchemaVersion") != 2:
        raise ReportError("trivy report: SchemaVersion 2 expected (trivy 0.20 or later, -f json)")
    out: list[Finding] = []
    for res in _list(data.get("Results"), "trivy Results"):
        res = _obj(res, "a trivy result")
        for v in _list(res.get("Vulnerabilities"), f"Vulnerabilities of {res.get('Target')}"):
            v = _obj(v, "a trivy vulnerability")
            out.append(Finding(id=_text(v.get("VulnerabilityID")), package=_text(v.get("PkgName")),
                               installed=_text(v.get("InstalledVersion")), fixed=_text(v.get("FixedVersion")),
                               severity=severity(v.get("Severity")), title=_text(v.get("Title"))))
    return out


def parse_grype(report: object) -> list[Finding]:
    """grype -o json: matches[] of {vulnerability: {id, severity, fix: {versions}}, relatedVulnerabilities,
    artifact: {name, version}}."""
    data = _obj(report, "grype report")
    if "matches" not in data:
        raise ReportError("grype report: no `matches` list (is this grype -o json output?)")
    out: list[Finding] = []
    for m in _list(data.get("matches"), "grype matches"):
        m = _obj(m, "a grype match")
        vuln, art = _obj(m.get("vulnerability"), "grype vulnerability"), _obj(m.get("artifact"), "grype artifact")
        fix: dict[str, Any] = vuln["fix"] if isinstance(vuln.get("fix"), dict) else {}
        related = tuple(_text(r.get("id")) for r in _list(m.get("relatedVulnerabilities"), "related")
                        if isinstance(r, dict) and r.get("id") and r.get("id") != vuln.get("id"))
        out.append(Finding(id=_text(vuln.get("id")), package=_text(art.get("name")),
                           installed=_text(art.get("version")),
                           fixed=", ".join(map(str, _list(fix.get("versions"), "fix versions"))),
                           severity=severity(vuln.get("severity")),
                           title=_first_line(_text(vuln.get("description"))), aliases=related))
    return out


def unaudited(tool: str, report: object) -> list[str]:
    """Dependencies the scanner says it did not check, each with its reason (pip-audit's skip_reason: not
    on the index, or its vulnerability service unreachable). Other scanners report no such thing."""
    if tool != "pip-audit":
        return []
    deps = report if isinstance(report, list) else report.get("dependencies") if isinstance(report, dict) else None
    return [_text(d.get("skip_reason")) for d in deps or [] if isinstance(d, dict) and d.get("skip_reason")]


PARSERS = {"pip-audit": parse_pip_audit, "trivy": parse_trivy, "grype": parse_grype}


def parse(tool: str, report: object, lock: object = None) -> list[Finding]:
    """The findings of `tool`'s decoded JSON report (`lock`: npm's package-lock.json, decoded, or None)."""
    if tool == "npm":
        return parse_npm_audit(report, lock)
    if tool not in PARSERS:
        raise ReportError(f"no parser for scanner {tool!r}")
    return PARSERS[tool](report)


def _first_line(text: str, limit: int = 120) -> str:
    line = text.strip().splitlines()[0] if text.strip() else ""
    return line if len(line) <= limit else line[: limit - 3] + "..."


def policy_of(fail_on: Sequence[str], unknown_severity: str, ignore: Iterable[Any],
              block_unaudited: bool = True) -> Policy:
    """A Policy from the config's scan section (its ignore entries have id, until, reason)."""
    return Policy(frozenset(fail_on), unknown_severity, tuple(Ignore(i.id, i.until, i.reason) for i in ignore),
                  block_unaudited)
