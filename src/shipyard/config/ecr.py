"""ECR housekeeping: how many images each repository keeps (`target.ecr` of the ECS target, and
`shipyard ecr prune`). What is kept and why is decided by shipyard.ecr.retention; docs/aws.md#ecr."""

from __future__ import annotations

from pydantic import Field, field_validator

from shipyard.config.base import StrictModel

REPOSITORY_NAME = r"^(?:[a-z0-9]+(?:[._-][a-z0-9]+)*/)*[a-z0-9]+(?:[._-][a-z0-9]+)*$"
"""ECR's own rule for a repository name (lowercase, `/` between namespaces)."""


class EcrPolicy(StrictModel):
    """Keep the newest `keep` images of each repository, and every older one a live or warm ECS task
    definition uses; delete the rest."""

    keep: int = Field(default=10, ge=1, le=1000,
                      description="Newest images kept per repository (by push time, untagged ones counted too); "
                                  "images in use by ECS are kept on top of these.")
    repositories: list[str] | None = Field(
        default=None, description="ECR repositories to prune; default: the repository of the target's image.")

    @field_validator("repositories")
    @classmethod
    def _names(cls, value: list[str] | None) -> list[str] | None:
        import re

        for name in value or []:
            if not re.fullmatch(REPOSITORY_NAME, name) or len(name) > 256:
                raise ValueError(f"{name!r} is not an ECR repository name (lowercase letters, digits, . _ - "
                                 "and / between parts, e.g. gli/api)")
        if value is not None and len(set(value)) != len(value):
            raise ValueError("a repository is listed twice")
        return value
