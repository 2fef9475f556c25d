"""A real third-party distribution for the plugin tests: a module and a `.dist-info` with entry_points.txt in
a directory, which importlib.metadata finds once the directory is on sys.path (or PYTHONPATH), exactly as it
finds an installed package. Its router kind `recording` keeps its backend set in a JSON file and appends
every call to it, so a test (or another process) can see what a deploy asked of it."""

from __future__ import annotations

from pathlib import Path

RECORDING = '''
"""A router kind from outside shipyard: records what it is asked, serves nothing."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from shipyard.plugins import BuildContext, Kind
from shipyard.routers.base import WeightedBackend


class RecordingConfig(BaseModel):
    """Records every call in a JSON file."""

    model_config = ConfigDict(extra="forbid")
    type: Literal["recording"] = Field(description="Router kind; `recording` keeps a log of its calls.")
    log: str = Field(min_length=1, description="The JSON file the calls go to (relative: to shipyard.yaml).")
    listen: str | None = Field(default=None, description="Front address reported by ensure().")


class RecordingRouter:
    def __init__(self, path: Path, listen: str | None, service: str, env: str) -> None:
        self.path, self.listen, self.service, self.env = path, listen, service, env

    def _load(self) -> dict[str, Any]:
        return json.loads(self.path.read_text()) if self.path.exists() else {"calls": [], "backends": []}

    def _record(self, call: str, **args: Any) -> dict[str, Any]:
        data = self._load()
        data["calls"].append({"call": call, "service": self.service, "env": self.env, **args})
        self.path.write_text(json.dumps(data))
        return data

    async def ensure(self) -> str | None:
        self._record("ensure")
        return self.listen

    async def set_backends(self, backends: list[WeightedBackend]) -> None:
        data = self._record("set_backends", backends=[b.__dict__ for b in backends])
        data["backends"] = [b.__dict__ for b in backends]
        self.path.write_text(json.dumps(data))

    async def backends(self) -> list[WeightedBackend]:
        return [WeightedBackend(**b) for b in self._load()["backends"]]

    async def drain(self, address: str, timeout: float, ws_timeout: float | None = None) -> int:
        self._record("drain", address=address)
        return 0

    async def verify(self, backends: list[WeightedBackend]) -> bool | None:
        live = {(b.address, b.weight) for b in await self.backends()}
        return live == {(b.address, b.weight) for b in backends}

    async def stats(self) -> dict[str, Any]:
        return {"backends": self._load()["backends"]}


def build(config: RecordingConfig, ctx: BuildContext) -> RecordingRouter:
    path = Path(config.log) if Path(config.log).is_absolute() else ctx.root / config.log
    return RecordingRouter(path, config.listen or ctx.settings.listen, ctx.service, ctx.env)


KIND = Kind("recording", RecordingConfig, build, "records its calls")
'''


def write_distribution(where: Path, name: str = "shipyard_recording", *, module: str = RECORDING,
                       entry_points: dict[str, dict[str, str]] | None = None, version: str = "1.0") -> Path:
    """`name` (module `name`.py, distribution `name` `version`) in `where`; returns `where` for sys.path."""
    where.mkdir(parents=True, exist_ok=True)
    (where / f"{name}.py").write_text(module)
    info = where / f"{name}-{version}.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n")
    groups = entry_points if entry_points is not None else {"shipyard.routers": {"recording": f"{name}:KIND"}}
    (info / "entry_points.txt").write_text("".join(
        f"[{group}]\n" + "".join(f"{k} = {v}\n" for k, v in eps.items()) + "\n" for group, eps in groups.items()))
    (info / "RECORD").write_text("")
    return where
