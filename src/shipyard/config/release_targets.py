"""Target kinds that activate a release as a whole instead of running instances: `static` (a built site on
S3 behind CloudFront) and `command` (CDK, Terraform, Serverless: commands shipyard does not understand).

Both mark themselves with `ACTIVATES_RELEASES` so the service model knows they need no `run` command and
no traffic strategy: such a target is deployed all at once (engine.release). Every value that would make
an activation fail half way (an empty bucket name from a variable that was not set, a command that does
not split) is refused here, when the config loads, before anything is uploaded or run.
"""

from __future__ import annotations

import re
import shlex
from typing import ClassVar, Literal

from pydantic import Field, field_validator

from shipyard.config.base import EnvValue, EnvVarName, StrictModel
from shipyard.config.durations import Duration

_BUCKET = re.compile(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]")
_DISTRIBUTION = re.compile(r"[A-Z0-9]{1,128}")
COMMAND_PLACEHOLDERS = ("revision", "sha", "env", "service")
_BRACED = re.compile(r"\{([A-Za-z_]+)\}")
DEFAULT_IMMUTABLE = ["assets/*", "*.[0-9a-f]{8}.*", "*-[0-9a-f]{8}.*"]
IMMUTABLE = "public, max-age=31536000, immutable"
NO_CACHE = "no-cache"
DEFAULT_CACHE = "public, max-age=300"


def _filled(value: str, what: str) -> str:
    if not value.strip():
        raise ValueError(f"{what} is empty (is the variable that fills it set?)")
    return value.strip()


class CacheRules(StrictModel):
    """Cache-Control per object, by glob on its path inside the release (first match wins: immutable, then
    no_cache, then default). `{8}`-style counts are allowed in globs, so hashed names can be said exactly."""

    immutable: list[str] = Field(default_factory=lambda: list(DEFAULT_IMMUTABLE),
                                 description="Globs of content-hashed assets, cached for a year as immutable.")
    no_cache: list[str] = Field(default_factory=lambda: ["*.html"],
                                description="Globs of objects browsers must revalidate every time (HTML).")
    immutable_header: str = Field(default=IMMUTABLE, min_length=1,
                                  description="Cache-Control for `immutable` objects.")
    no_cache_header: str = Field(default=NO_CACHE, min_length=1, description="Cache-Control for `no_cache` objects.")
    default: str = Field(default=DEFAULT_CACHE, min_length=1, description="Cache-Control for every other object.")


class StaticTarget(StrictModel):
    """A built site on S3 behind CloudFront: each release under its own prefix, made live by switching the
    distribution's origin path (all at once: a canary on CloudFront is out of scope)."""

    ACTIVATES_RELEASES: ClassVar[bool] = True

    type: Literal["static"] = Field(description="Target kind; `static` uploads publish_dir to S3 behind CloudFront.")
    bucket: str = Field(description="S3 bucket holding every release (its name, not an ARN).")
    distribution_id: str = Field(description="CloudFront distribution whose origin serves the bucket.")
    prefix: str = Field(default="releases/{sha}/", description="Key prefix of one release; `{sha}` is required.")
    origin_id: str | None = Field(default=None, description="Which origin of the distribution to switch "
                                                            "(default: the one whose domain is the bucket's).")
    region: str | None = Field(default=None, description="AWS region (default: boto3's chain, e.g. AWS_REGION).")
    endpoint_url: str | None = Field(default=None, description="AWS endpoint (moto, LocalStack, a VPC endpoint).")
    url: str | None = Field(default=None, description="Site URL fetched (GET, 2xx/3xx) as the health check, "
                                                      "besides the origin and index checks.")
    keep: int = Field(default=5, ge=2, description="Release prefixes kept in the bucket (never the live or "
                                                   "previous one).")
    parallel: int = Field(default=8, ge=1, le=10, description="Uploads at once (boto3's connection pool holds 10).")
    cache: CacheRules = Field(default_factory=CacheRules, description="Cache-Control rules.")
    invalidation_timeout: Duration = Field(default=600.0, gt=0,
                                           description="How long to wait for the CloudFront invalidation.")

    @field_validator("bucket")
    @classmethod
    def _bucket(cls, value: str) -> str:
        value = _filled(value, "bucket")
        if not _BUCKET.fullmatch(value) or ".." in value:
            raise ValueError(f"{value!r} is not an S3 bucket name (3-63 of a-z 0-9 . -)")
        return value

    @field_validator("distribution_id")
    @classmethod
    def _distribution(cls, value: str) -> str:
        value = _filled(value, "distribution_id")
        if not _DISTRIBUTION.fullmatch(value):
            raise ValueError(f"{value!r} is not a CloudFront distribution id (like E2QWRUHAPOMQZL)")
        return value

    @field_validator("prefix")
    @classmethod
    def _prefix(cls, value: str) -> str:
        if "{sha}" not in value or value.startswith("/") or ".." in value.split("/"):
            raise ValueError(f"{value!r}: a relative key prefix with {{sha}} in it, e.g. releases/{{sha}}/")
        return value if value.endswith("/") else value + "/"

    def prefix_of(self, sha: str) -> str:
        return self.prefix.replace("{sha}", sha)


def _command(value: str | None, what: str) -> str | None:
    if value is None:
        return None
    if "${secret:" in value:
        raise ValueError(f"{what}: a secret never goes into a command's arguments; put it in the service's env "
                         "(env: {NAME: \"${secret:NAME}\"}) and let the command read $NAME")
    try:
        argv = shlex.split(value)
    except ValueError as exc:
        raise ValueError(f"{what}: cannot split it like a shell would: {exc}") from None
    if not argv:
        raise ValueError(f"{what} is empty")
    unknown = sorted({m for arg in argv for m in _BRACED.findall(arg)} - set(COMMAND_PLACEHOLDERS))
    if unknown:
        raise ValueError(f"{what}: unknown placeholder {{{unknown[0]}}} (known: "
                         f"{', '.join('{' + p + '}' for p in COMMAND_PLACEHOLDERS)})")
    return value


class CommandTarget(StrictModel):
    """Any deploy tool run as commands (split like a shell would, never through one): shipyard's hooks,
    health, alarms, approvals, history and notifications around what it does not understand."""

    ACTIVATES_RELEASES: ClassVar[bool] = True

    type: Literal["command"] = Field(description="Target kind; `command` runs deploy/rollback/status commands.")
    deploy: str = Field(description="Command that deploys the release, e.g. `cdk deploy ApiStack --require-approval "
                                    "never`; {revision} {sha} {env} {service} are replaced, each within its "
                                    "argument.")
    rollback: str | None = Field(default=None, description="Command that goes back to the previous release, with "
                                                           "that release's placeholders (default: its `deploy`).")
    status: str | None = Field(default=None, description="Command whose exit 0 means healthy: the health check "
                                                         "after deploy and during bake (default: none).")
    cwd: str | None = Field(default=None, description="Directory (relative to the release) the commands run in.")
    timeout: Duration = Field(default=1800.0, gt=0, description="Time allowed to deploy or roll back; then the "
                                                                "process group is killed.")
    status_timeout: Duration = Field(default=60.0, gt=0, description="Time allowed to one `status` run.")
    env: dict[EnvVarName, EnvValue] = Field(default_factory=dict,
                                            description="Variables added to the service's env for the commands.")

    @field_validator("deploy", "rollback", "status")
    @classmethod
    def _splits(cls, value: str | None) -> str | None:
        return _command(value, "the command")

    @field_validator("cwd")
    @classmethod
    def _inside(cls, value: str | None) -> str | None:
        if value is not None and (value.startswith("/") or ".." in value.split("/")):
            raise ValueError(f"{value!r}: a directory inside the release (relative, no '..')")
        return value
