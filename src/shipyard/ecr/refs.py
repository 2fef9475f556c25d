"""Image references as task definitions write them, reduced to what ECR knows: (repository, tag or digest).

`123456789012.dkr.ecr.ap-northeast-2.amazonaws.com/gli/api:3f2a...`, `.../gli/api@sha256:...`, `gli/api`
(tag latest). The registry part (a first component with a dot or a port, or `localhost`) is dropped: an
image is matched by repository name, so the same name in another registry counts as in use too, which
errs on the side of keeping.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

DIGEST = re.compile(r"sha256:[0-9a-f]{64}")


@dataclass(frozen=True)
class ImageRef:
    """One reference: by tag, by digest, or (`repo:tag@sha256:...`) by both."""

    repository: str
    tag: str | None = None
    digest: str | None = None

    def __str__(self) -> str:
        return self.repository + (f":{self.tag}" if self.tag else "") + (f"@{self.digest}" if self.digest else "")


def parse_ref(image: str) -> ImageRef | None:
    """The reference in a container definition's `image`, or None when it is not one (empty, spaces)."""
    text = image.strip()
    if not text or any(c.isspace() for c in text):
        return None
    name, _, digest = text.partition("@")
    if digest and not DIGEST.fullmatch(digest):
        return None
    parts = name.split("/")
    if len(parts) > 1 and ("." in parts[0] or ":" in parts[0] or parts[0] == "localhost"):
        parts = parts[1:]
    last, colon, tag = parts[-1].partition(":")
    repository = "/".join([*parts[:-1], last])
    if not repository:
        return None
    if not colon and not digest:
        tag = "latest"          # what docker and ECS pull when the reference names neither
    return ImageRef(repository, tag or None, digest or None)


def repository_of(template: str, fields: dict[str, str] | None = None) -> str | None:
    """The repository an image template names (the ECS target's `image`, "{registry}/{service}:{sha}"
    with `fields` such as service and env filled in): what `target.ecr` prunes when it lists none."""
    text = template.replace("{registry}", "registry.invalid")
    for key, value in (fields or {}).items():
        text = text.replace("{" + key + "}", value)
    text = re.sub(r"{[a-z]+}", "x", text)
    ref = parse_ref(text)
    return ref.repository if ref is not None else None
