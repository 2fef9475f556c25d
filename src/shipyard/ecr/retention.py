"""Which images of one ECR repository to delete: pure, images and references in, a plan out.

The rule (docs/aws.md#ecr): order the images by imagePushedAt, newest first (untagged images count like
any other: an untagged image is still a pushed image, often a previous `latest`); keep the newest `keep`;
keep every other image that an in-use reference names by one of its tags or by its digest; delete the
rest. Ties in push time (ECR stores seconds) are broken by the digest so the same input gives the same
plan. A reference in another repository never protects an image here, and one naming an image that is not
in the listing protects nothing (it may be pulled from elsewhere).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from shipyard.ecr.refs import ImageRef


@dataclass(frozen=True)
class Image:
    """One image of a repository as describe_images lists it."""

    digest: str
    pushed_at: dt.datetime
    tags: tuple[str, ...] = ()

    @classmethod
    def from_detail(cls, detail: Mapping[str, Any]) -> Image:
        pushed = detail.get("imagePushedAt")
        if not isinstance(pushed, dt.datetime):
            pushed = dt.datetime.fromtimestamp(float(pushed or 0), dt.UTC)
        return cls(str(detail["imageDigest"]), pushed, tuple(sorted(detail.get("imageTags") or ())))

    def label(self) -> str:
        return f"{self.digest[:19]} ({', '.join(self.tags) if self.tags else 'untagged'})"

    def to_dict(self) -> dict[str, Any]:
        return {"digest": self.digest, "tags": list(self.tags), "pushed_at": self.pushed_at.isoformat()}


@dataclass(frozen=True)
class Decision:
    image: Image
    keep: bool
    reason: str

    def to_dict(self) -> dict[str, Any]:
        return {**self.image.to_dict(), "keep": self.keep, "reason": self.reason}


@dataclass(frozen=True)
class PrunePlan:
    """Every image with its decision, newest first."""

    repository: str
    keep: int
    decisions: tuple[Decision, ...] = field(default=())

    @property
    def delete(self) -> list[Image]:
        return [d.image for d in self.decisions if not d.keep]

    @property
    def kept(self) -> list[Decision]:
        return [d for d in self.decisions if d.keep]

    def to_dict(self) -> dict[str, Any]:
        return {"repository": self.repository, "keep": self.keep,
                "images": [d.to_dict() for d in self.decisions]}


def plan_prune(repository: str, images: Iterable[Image], in_use: Mapping[ImageRef, str], keep: int) -> PrunePlan:
    """The plan for `repository`: `in_use` maps each reference ECS uses to why (which task definition,
    which service), so a kept image says who holds it."""
    if keep < 1:
        raise ValueError("keep must be at least 1")
    by_tag: dict[str, str] = {}
    by_digest: dict[str, str] = {}
    for ref, why in in_use.items():
        if ref.repository != repository:
            continue
        if ref.digest:
            by_digest.setdefault(ref.digest, f"{why} (by digest)")
        if ref.tag:
            by_tag.setdefault(ref.tag, f"{why} (as :{ref.tag})")
    ordered = sorted(images, key=lambda i: (i.pushed_at, i.digest), reverse=True)
    decisions = []
    for rank, image in enumerate(ordered, 1):
        user = by_digest.get(image.digest) or next((by_tag[t] for t in image.tags if t in by_tag), None)
        if rank <= keep:
            reason = f"newest {keep} (#{rank})" + (f"; in use: {user}" if user else "")
            decisions.append(Decision(image, True, reason))
        elif user:
            decisions.append(Decision(image, True, f"in use: {user}"))
        else:
            decisions.append(Decision(image, False, f"#{rank}, older than the newest {keep}, not in use"))
    return PrunePlan(repository, keep, tuple(decisions))
