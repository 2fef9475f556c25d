"""Which scanner a scan runs and with which argv (pure: the caller says what is installed and what the tree
holds). Each argv asks for a JSON report on stdout; the exit status is not the verdict (pip-audit and npm
exit 1 when they find anything), the parsed report is.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from shipyard.errors import UsageError


@dataclass(frozen=True)
class ScanCommand:
    tool: str
    argv: list[str]
    lockfile: str | None = None     # npm: package-lock.json, read for installed versions


def scan_command(tool: str, *, image: str | None, requirements: str, args: Sequence[str],
                 has_file: Callable[[str], bool], which: Callable[[str], str | None]) -> ScanCommand:
    """The scanner to run. `has_file(relpath)`: the scanned tree has that file; `which(name)`: the
    scanner's executable, or None when it is not installed."""
    if tool == "auto":
        tool = _pick(image, requirements, has_file, which)
    binary = which("npm" if tool == "npm" else tool)
    if binary is None:
        raise UsageError(f"scan: {tool} is not installed (scan.tool: {tool})")
    extra = list(args)
    if tool == "pip-audit":
        if image:
            raise UsageError("scan: pip-audit scans requirements, not images (use trivy or grype for `image`)")
        return ScanCommand(tool, [binary, "-r", requirements, "-f", "json", "--progress-spinner", "off", *extra])
    if tool == "npm":
        return ScanCommand(tool, [binary, "audit", "--json", *extra], lockfile="package-lock.json")
    if tool == "trivy":
        mode, target = ("image", image) if image else ("fs", ".")
        return ScanCommand(tool, [binary, mode, "--format", "json", "--quiet", *extra, target])
    if tool == "grype":
        return ScanCommand(tool, [binary, image or "dir:.", "-o", "json", "-q", *extra])
    raise UsageError(f"scan: unknown tool {tool!r}")


def _pick(image: str | None, requirements: str, has_file: Callable[[str], bool],
          which: Callable[[str], str | None]) -> str:
    images = [t for t in ("trivy", "grype") if which(t)]
    if image:
        if not images:
            raise UsageError("scan: scanning an image needs trivy or grype, and neither is installed")
        return images[0]
    if has_file(requirements) and which("pip-audit"):
        return "pip-audit"
    if has_file("package-lock.json") and which("npm"):
        return "npm"
    if images:
        return images[0]
    raise UsageError(f"scan: no scanner fits (no {requirements} with pip-audit installed, no package-lock.json "
                     "with npm, no trivy or grype); set scan.tool or remove `scan` from the pipeline")
