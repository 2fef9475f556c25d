"""The gates a service's release passes before any instance starts: `pipeline`, `stages` and `scan`.

`pipeline: [test, build, scan, migrate]` names the stages in order. Three names are built in (`build` is the
service's build, `migrate` its migrate command, `scan` the vulnerability scan configured under `scan:`); any
other name is a command stage defined under `stages:`. `image:` names the image `build` pushes to ECR and
the tags it ends with. Checks that need the service (a stage named in the pipeline but not defined) live in
config.service, next to the fields they relate.
"""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any, Literal

from pydantic import BeforeValidator, Field, field_validator

from shipyard.config.base import StrictModel
from shipyard.config.durations import Duration
from shipyard.config.ecr import REPOSITORY_NAME

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


ImageTag = Literal["sha", "semver", "latest"]
IMAGE_TAGS: tuple[ImageTag, ...] = ("sha", "semver", "latest")
"""What the build stage's image is tagged with: the full git sha (pushed by `build`), the revision's
semantic version tag (vX.Y.Z or X.Y.Z on that commit, without the v) and `latest`."""


class BuildImage(StrictModel):
    """The image the `build` stage pushes to ECR as `<repository>:<full sha>`; shipyard then adds the other
    tags registry-side (the same manifest put again under each tag: no docker needed)."""

    repository: str = Field(pattern=REPOSITORY_NAME, max_length=256,
                            description="ECR repository the build pushes to (the name, e.g. gli/api, not the URI).")
    tags: list[ImageTag] = Field(default_factory=lambda: list(IMAGE_TAGS),
                                 description="Tags the image ends with: sha (the full git sha, which `build` must "
                                             "push), semver (the commit's vX.Y.Z git tag, skipped with a note when "
                                             "it has none), latest (moved to this image).")
    registry_id: str | None = Field(default=None, pattern=r"^\d{12}$",
                                    description="AWS account id of the registry; default: the caller's own.")
    region: str | None = Field(default=None, description="AWS region of the registry; default: boto3's "
                                                         "(AWS_REGION, profile).")
    endpoint_url: str | None = Field(default=None, description="Another ECR endpoint (a VPC endpoint, "
                                                               "LocalStack, moto).")

    @field_validator("tags")
    @classmethod
    def _sha_first(cls, value: list[str]) -> list[str]:
        if "sha" not in value:
            raise ValueError("must include sha: the build pushes <repository>:<sha> and the other tags are "
                             "copied from it")
        if len(set(value)) != len(value):
            raise ValueError("a tag is listed twice")
        return value
