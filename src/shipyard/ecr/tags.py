"""The tags a build's image ends with, added registry-side: the build pushed `<repository>:<full sha>`;
shipyard reads that manifest (BatchGetImage) and puts the same bytes again under each other tag
(PutImage), so no docker and no layer moves. A tag another image holds is moved (ECR moves a tag on
PutImage in a mutable repository); ImageAlreadyExistsException means the tag is on this image already (a
retried stage: idempotent) unless the repository's tags are immutable and another image holds it, which
fails the stage with one line.

`semver` comes from the commit's git tags (vX.Y.Z or X.Y.Z, with an optional -prerelease; the highest when
there are several), pushed without the `v`: a commit without one gets no semver tag and a note says so.
"""

from __future__ import annotations

import asyncio
import re
from dataclasses import dataclass, field
from typing import Any

from shipyard.aws import AwsSettings, calling, client, error_code
from shipyard.errors import ShipyardError, StageFailed
from shipyard.releases.git import GitSource, git

SEMVER = re.compile(r"v?(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)(?:-([0-9A-Za-z.-]+))?")
MANIFEST_TYPES = ["application/vnd.docker.distribution.manifest.v2+json",
                  "application/vnd.docker.distribution.manifest.list.v2+json",
                  "application/vnd.oci.image.manifest.v1+json", "application/vnd.oci.image.index.v1+json",
                  "application/vnd.docker.distribution.manifest.v1+json"]


def semver_of(git_tags: list[str]) -> str | None:
    """The highest semantic version among a commit's tags, without its `v` (a release outranks its
    prereleases); None when no tag is one."""
    found = []
    for tag in git_tags:
        m = SEMVER.fullmatch(tag.strip())
        if m and len(tag) <= 128:
            major, minor, patch, pre = m.groups()
            found.append(((int(major), int(minor), int(patch), pre is None, pre or ""), tag.strip().lstrip("v")))
    return max(found)[1] if found else None


@dataclass(frozen=True)
class TagPlan:
    """The tags to put on the image (beside the sha it has), and notes on those skipped."""

    tags: tuple[str, ...]
    notes: tuple[str, ...] = ()


def plan_tags(wanted: list[str], sha: str, semver: str | None) -> TagPlan:
    """Pure: the configured tag kinds -> concrete tags for this revision."""
    tags: list[str] = []
    notes: list[str] = []
    for kind in wanted:
        if kind == "semver":
            if semver is None:
                notes.append(f"semver: commit {sha[:8]} has no vX.Y.Z git tag; no semver tag pushed")
            else:
                tags.append(semver)
        elif kind == "latest":
            tags.append("latest")
    return TagPlan(tuple(dict.fromkeys(tags)), tuple(notes))


async def commit_tags(source: GitSource, sha: str) -> list[str]:
    """The git tags on `sha` (annotated ones peeled), read from the repo the release was exported from."""
    repo = await source.repo(fetch=False)
    out = await git("tag", "--points-at", sha, cwd=repo)
    return out.decode("utf-8", "replace").split()


@dataclass
class Tagger:
    """ECR calls for one repository (blocking: run in a thread)."""

    ecr: Any
    repository: str
    registry_id: str | None = None
    error: type[ShipyardError] = StageFailed
    _extra: dict[str, str] = field(init=False)

    def __post_init__(self) -> None:
        self._extra = {"registryId": self.registry_id} if self.registry_id else {}

    def get(self, tag: str) -> dict[str, Any] | None:
        """The image under `tag` (imageId, imageManifest, imageManifestMediaType), None when there is none."""
        with calling("ecr", "BatchGetImage", f"{self.repository}:{tag}", error=self.error):
            out = self.ecr.batch_get_image(repositoryName=self.repository, imageIds=[{"imageTag": tag}],
                                           acceptedMediaTypes=MANIFEST_TYPES, **self._extra)
        images = out.get("images") or []
        return dict(images[0]) if images else None

    def put(self, image: dict[str, Any], tag: str) -> bool:
        """Put `image`'s manifest under `tag`; False when ECR says the tag is on it already."""
        digest = str(image["imageId"]["imageDigest"])
        with calling("ecr", "PutImage", f"{self.repository}:{tag}", error=self.error):
            try:
                self.ecr.put_image(repositoryName=self.repository, imageManifest=image["imageManifest"],
                                   imageManifestMediaType=image.get("imageManifestMediaType") or MANIFEST_TYPES[0],
                                   imageTag=tag, imageDigest=digest, **self._extra)
            except Exception as exc:
                if error_code(exc) != "ImageAlreadyExistsException":
                    raise
                held = self.get(tag)
                if held is not None and held["imageId"]["imageDigest"] == digest:
                    return False
                raise self.error(f"aws ecr PutImage {self.repository}:{tag}: the tag is held by "
                                 f"{held['imageId']['imageDigest'] if held else 'another image'} and the "
                                 "repository's tags are immutable: cannot move it") from None
        return True

    def apply(self, sha: str, plan: TagPlan) -> dict[str, Any]:
        image = self.get(sha)
        if image is None:
            raise self.error(f"image {self.repository}:{sha} is not in ECR: the build stage must push it "
                             "(docker push <registry>/" + self.repository + ":$SHIPYARD_REVISION)")
        digest = str(image["imageId"]["imageDigest"])
        applied: list[dict[str, str]] = [{"tag": sha, "action": "pushed by build"}]
        for tag in plan.tags:
            before = self.get(tag)
            held = str(before["imageId"]["imageDigest"]) if before else None
            if held == digest:
                applied.append({"tag": tag, "action": "already"})
                continue
            added = self.put(image, tag)
            entry = {"tag": tag, "action": "added" if held is None else "moved"}
            if not added:
                entry["action"] = "already"
            elif held is not None:
                entry["from"] = held
            applied.append(entry)
        return {"repository": self.repository, "digest": digest, "tags": applied, "notes": list(plan.notes)}


async def tag_build_image(cfg: Any, source: GitSource, sha: str) -> dict[str, Any]:
    """The `build` stage's image tagging (config.pipeline.BuildImage): the record stored with the step."""
    semver = semver_of(await commit_tags(source, sha)) if "semver" in cfg.tags else None
    plan = plan_tags(list(cfg.tags), sha, semver)
    ecr = client("ecr", AwsSettings(cfg.region, cfg.endpoint_url), error=StageFailed)
    return await asyncio.to_thread(Tagger(ecr, cfg.repository, cfg.registry_id).apply, sha, plan)
