"""The gates a service's release passes before any instance starts: `pipeline`, `stages` and `scan`.

`pipeline: [test, build, scan, migrate]` names the stages in order. Three names are built in (`build` is the
service's build, `migrate` its migrate command, `scan` the vulnerability scan configured under `scan:`); any
other name is a command stage defined under `stages:`. Checks that need the service (a stage named in the
pipeline but not defined) live in config.service, next to the fields they relate.
"""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any, Literal

from pydantic import BeforeValidator, Field

from shipyard.config.base import StrictModel
from shipyard.config.durations import Duration

BUILT_IN_STAGES = ("build", "migrate", "scan")
"""Stage names with a meaning of their own; a command stage may not take one of them."""

SEVERITIES = ("critical", "high", "medium", "low", "unknown")
"""Severity levels of a finding, most severe first (every scanner's words are mapped onto these)."""

Severity = Literal["critical", "high", "medium", "low", "unknown"]
DEFAULT_FAIL_ON: tuple[Severity, ...] = ("critical", "high")


class Stage(StrictModel):
    """A command stage: a shell command that must exit 0 for the deploy to go on."""

    run: str = Field(min_length=1, description="Shell command; runs in a fresh checkout of the revision before "
                                               "`build`, in the built release after it.")
    timeout: Duration = Field(default=600.0, gt=0, description="Kill the stage's whole process group and fail the "
                                                                 "deploy after this long.")


def _stage_shorthand(value: Any) -> Any:
    return {"run": value} if isinstance(value, str) else value


StageField = Annotated[Stage, BeforeValidator(_stage_shorthand, json_schema_input_type=str | Stage)]


class ScanIgnore(StrictModel):
    """A finding accepted for a while: it does not block until `until` has passed."""

    id: str = Field(min_length=1, description="Advisory id (CVE-..., GHSA-..., PYSEC-...); an alias matches too.")
    until: dt.date = Field(description="Last day the ignore holds (YYYY-MM-DD); after it the finding blocks again "
                                       "and the scan says the ignore expired.")
    reason: str = Field(default="", description="Why it is accepted (shown with the finding).")


class Scan(StrictModel):
    """The vulnerability scan gate: run a scanner, read its JSON report, block on severe findings."""

    tool: Literal["auto", "pip-audit", "npm", "trivy", "grype"] = Field(
        default="auto", description="Scanner; auto: trivy or grype for an `image`, else pip-audit when the tree "
                                    "has `requirements`, npm when it has package-lock.json, else trivy/grype on "
                                    "the directory, whichever is installed.")
    fail_on: list[Severity] = Field(default_factory=lambda: list(DEFAULT_FAIL_ON),
                                    description="Severities that block the deploy.")
    unknown_severity: Severity = Field(
        default="high", description="Severity given to a finding whose report has none (pip-audit reports none; "
                                    "trivy/grype say UNKNOWN): high blocks under the default fail_on.")
    ignore: list[ScanIgnore] = Field(default_factory=list, description="Findings accepted until a date.")
    unaudited: Literal["block", "allow"] = Field(
        default="block", description="A dependency the scanner could not check (pip-audit's skip_reason: not on "
                                     "the index, or its vulnerability data unreachable) blocks, or is allowed.")
    requirements: str = Field(default="requirements.txt",
                              description="pip-audit's requirements file, relative to the tree scanned.")
    image: str | None = Field(default=None, description="An image reference for trivy/grype to scan instead of the "
                                                        "tree (`{revision}` is replaced by the full sha).")
    args: list[str] = Field(default_factory=list, description="Extra arguments for the scanner (e.g. pip-audit's "
                                                              "--disable-pip, npm's --omit=dev).")
    timeout: Duration = Field(default=600.0, gt=0, description="Kill the scanner and fail the deploy after this "
                                                                 "long.")
