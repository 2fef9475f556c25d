"""Prune one ECR repository: list its images, plan (shipyard.ecr.retention), delete by digest in
batches of 100 (BatchDeleteImage's limit), and report each image AWS refused on its own line.

Deleting by digest removes the image with all its tags (deleting by tag would only untag an image that
has others). The in-use references are read after the listing, so an image a service moved to while we
listed is protected; an image pushed after the listing is not in it, so it is never deleted.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from typing import Any

from shipyard.aws import AwsSettings, calling, client
from shipyard.ecr import inuse
from shipyard.ecr.refs import ImageRef
from shipyard.ecr.retention import Image, PrunePlan, plan_prune
from shipyard.errors import TargetError

BATCH = 100


@dataclass
class PruneResult:
    plan: PrunePlan
    dry_run: bool
    deleted: list[str] = field(default_factory=list)          # digests
    failures: list[str] = field(default_factory=list)         # one line per image AWS refused

    def to_dict(self) -> dict[str, Any]:
        return {**self.plan.to_dict(), "dry_run": self.dry_run, "deleted": self.deleted,
                "failures": self.failures}


def list_images(ecr: Any, repository: str, registry_id: str | None = None) -> list[Image]:
    extra = {"registryId": registry_id} if registry_id else {}
    images: list[Image] = []
    with calling("ecr", "DescribeImages", repository, error=TargetError):
        for page in ecr.get_paginator("describe_images").paginate(repositoryName=repository, **extra):
            images += [Image.from_detail(d) for d in page.get("imageDetails", [])]
    return images


def delete_images(ecr: Any, repository: str, images: list[Image], registry_id: str | None = None,
                  ) -> tuple[list[str], list[str]]:
    """(deleted digests, failure lines); a refused batch call raises, a refused image is a line."""
    extra = {"registryId": registry_id} if registry_id else {}
    labels = {i.digest: i.label() for i in images}
    deleted: list[str] = []
    failures: list[str] = []
    for start in range(0, len(images), BATCH):
        chunk = images[start:start + BATCH]
        with calling("ecr", "BatchDeleteImage", repository, error=TargetError):
            out = ecr.batch_delete_image(repositoryName=repository,
                                         imageIds=[{"imageDigest": i.digest} for i in chunk], **extra)
        deleted += list(dict.fromkeys(str(i["imageDigest"]) for i in out.get("imageIds", [])
                                      if i.get("imageDigest")))
        for fail in out.get("failures", []):
            digest = str(fail.get("imageId", {}).get("imageDigest", "?"))
            failures.append(f"{repository} {labels.get(digest, digest)}: {fail.get('failureCode', 'error')}: "
                            f"{' '.join(str(fail.get('failureReason', '')).split())}")
    return deleted, failures


def prune_sync(ecr: Any, ecs: Any, repository: str, keep: int, clusters: list[str] | None, *,
               dry_run: bool = False, registry_id: str | None = None, now: float | None = None) -> PruneResult:
    images = list_images(ecr, repository, registry_id)
    refs: dict[ImageRef, str] = inuse.collect(ecs, clusters, time.time() if now is None else now)
    plan = plan_prune(repository, images, refs, keep)
    result = PruneResult(plan, dry_run)
    if not dry_run and plan.delete:
        result.deleted, result.failures = delete_images(ecr, repository, plan.delete, registry_id)
    return result


async def prune(repositories: list[str], keep: int, clusters: list[str] | None, *, dry_run: bool = False,
                settings: AwsSettings | None = None, registry_id: str | None = None) -> list[PruneResult]:
    """Prune each repository in turn (the ECS target calls this after a deploy with its `ecr` policy)."""
    ecr = client("ecr", settings, error=TargetError)
    ecs = client("ecs", settings, error=TargetError)
    return [await asyncio.to_thread(prune_sync, ecr, ecs, repo, keep, clusters, dry_run=dry_run,
                                    registry_id=registry_id) for repo in repositories]
