"""Build step of the demo static site: render index.html into dist/ with the committed VERSION.

A real frontend build (npm run build) turns sources into a publish directory; this stands in for it
with nothing but the standard library, so the demo exercises shipyard's build-then-run path without
Node. The version lands in the page so a test can tell which revision is being served.

Usage: `python build.py` in the repo root; writes dist/index.html.
"""

from __future__ import annotations

import sys
from pathlib import Path

PLACEHOLDER = "{{VERSION}}"


def build(root: Path) -> Path:
    """Render root/index.html into root/dist/index.html and return the output path."""
    version_file = root / "VERSION"
    version = version_file.read_text(encoding="utf-8").strip() if version_file.exists() else "unknown"
    template = (root / "index.html").read_text(encoding="utf-8")
    dist = root / "dist"
    dist.mkdir(exist_ok=True)
    out = dist / "index.html"
    # Write to a temp name then rename, so a server already serving dist/ never sees a half file.
    tmp = dist / ".index.html.tmp"
    tmp.write_text(template.replace(PLACEHOLDER, version), encoding="utf-8")
    tmp.replace(out)
    (dist / "version.txt").write_text(version + "\n", encoding="utf-8")
    return out


def main() -> int:
    out = build(Path.cwd())
    print(f"web build: wrote {out}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
