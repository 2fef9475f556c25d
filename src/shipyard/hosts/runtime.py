"""The runtime archive: shipyard itself and what its host agent imports, packed from this controller's own
installed distributions into one tar.gz that a host unpacks into a bare venv (`python3 -m venv
--without-pip`), so a host needs nothing but Python: no package index, no compiler.

Built from files already installed here, so it only fits a host with the same Python (major.minor) and
platform: checked before anything is sent. The archive is content-addressed (sha256) and cached under the
project's .shipyard/runtime/, rebuilt only when an installed file changes.
"""

from __future__ import annotations

import hashlib
import io
import sys
import sysconfig
import tarfile
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

from packaging.markers import default_environment
from packaging.requirements import Requirement

import shipyard
from shipyard.errors import UsageError

# What the agent, the keeper, the routers and the log processes import (their requirements follow):
# tests/integration/test_hosts_setup.py proves an agent runs on a host whose venv holds only these.
HOST_ROOTS = ("httpx", "httptools", "uvloop", "aiohttp", "rich", "click", "cryptography", "packaging")
PYTHON_PROBE = "import sys, sysconfig; print('%d.%d' % sys.version_info[:2], sysconfig.get_platform())"


@dataclass(frozen=True)
class Runtime:
    path: Path
    sha256: str
    size: int
    python: str          # "3.11 linux-x86_64": what a host must run

    @property
    def version(self) -> str:
        return metadata.version("shipyard")


def controller_python() -> str:
    return f"{sys.version_info[0]}.{sys.version_info[1]} {sysconfig.get_platform()}"


def check_python(host: str, found: str) -> None:
    """Refuse a host whose Python cannot load the controller's packages (one line saying what to do)."""
    want = controller_python()
    if found.strip() != want:
        raise UsageError(f"{host}: python3 there is {found.strip() or 'missing'}, this controller runs {want}: "
                         f"the runtime is built from this controller's packages; run shipyard from a Python "
                         f"{want.split()[0]} on the same platform, or install python{want.split()[0]} on {host}")


def host_distributions() -> list[metadata.Distribution]:
    """HOST_ROOTS and everything they require (markers evaluated for this Python, extras left out)."""
    env: dict[str, str] = {**default_environment(), "extra": ""}  # type: ignore[dict-item]
    seen: dict[str, metadata.Distribution] = {}
    todo = list(HOST_ROOTS)
    while todo:
        name = todo.pop()
        key = name.lower().replace("_", "-")
        if key in seen:
            continue
        try:
            dist = metadata.distribution(name)
        except metadata.PackageNotFoundError:
            continue                      # an optional dependency not installed here (uvloop on Windows)
        seen[key] = dist
        for text in dist.requires or []:
            req = Requirement(text)
            if req.marker is None or req.marker.evaluate(env):
                todo.append(req.name)
    return sorted(seen.values(), key=lambda d: d.metadata["Name"].lower())


def _members() -> list[tuple[str, Path]]:
    """(name in the archive, file here) for every file the host needs, relative to site-packages."""
    out: list[tuple[str, Path]] = []
    for dist in host_distributions():
        for f in dist.files or []:
            here = Path(str(dist.locate_file(f)))
            name = f.as_posix()
            if name.startswith("..") or "__pycache__" in name or not here.is_file():
                continue                  # console scripts (bin/) and bytecode: the host compiles its own
            out.append((name, here))
    package = Path(shipyard.__file__).resolve().parent
    for here in sorted(package.rglob("*")):
        if here.is_file() and "__pycache__" not in here.parts:
            out.append((f"shipyard/{here.relative_to(package).as_posix()}", here))
    return out


def _dist_info() -> bytes:
    meta = metadata.distribution("shipyard").metadata
    return f"Metadata-Version: 2.1\nName: shipyard\nVersion: {meta['Version']}\n".encode()


def build_runtime(cache_dir: Path) -> Runtime:
    """The archive for this controller (cached: reused while no installed file changed)."""
    members = _members()
    manifest = hashlib.sha256()
    for name, here in members:
        st = here.stat()
        manifest.update(f"{name}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
    manifest.update(controller_python().encode())
    cache_dir.mkdir(parents=True, exist_ok=True)
    path = cache_dir / f"runtime-{manifest.hexdigest()[:16]}.tar.gz"
    if not path.exists():
        tmp = path.with_suffix(".tmp")
        with tarfile.open(tmp, "w:gz", compresslevel=6) as tar:
            for name, here in members:
                info = tar.gettarinfo(str(here), arcname=name)
                info.uid = info.gid = 0
                info.uname = info.gname = ""
                with here.open("rb") as f:
                    tar.addfile(info, f)
            version = metadata.version("shipyard")
            data = _dist_info()
            info = tarfile.TarInfo(f"shipyard-{version}.dist-info/METADATA")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
        tmp.replace(path)
        for old in cache_dir.glob("runtime-*.tar.gz"):
            if old != path:
                old.unlink(missing_ok=True)
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    return Runtime(path, digest, path.stat().st_size, controller_python())
