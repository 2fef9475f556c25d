"""`releases:`: release groups, several services released together in waves with one shared abort.

A group names its members (`services`) and the order they go out in (`order`: a list of waves; the
services of one wave deploy in parallel, the waves one after another). Without `order` every member is
one wave. The checks that need the services section (a member must be a defined service) live in
config.refs, so the loader reports them with a file:line like every other unknown name.
"""

from __future__ import annotations

from pydantic import Field, model_validator

from shipyard.config.base import Name, StrictModel


class ReleaseGroup(StrictModel):
    """Services released together: waves in order, one abort for all (docs/releases.md)."""

    services: list[Name] = Field(min_length=1, description="The group's members: services defined under "
                                                           "`services`, each at most once.")
    order: list[list[Name]] | None = Field(
        default=None, description="Waves, e.g. [[api, ws], [admin-web, user-web]]: the services of one wave "
                                  "deploy in parallel, each wave after the one before has succeeded. Every "
                                  "member in exactly one wave (default: all members in one wave).")

    @model_validator(mode="after")
    def _waves(self) -> ReleaseGroup:
        twice = sorted({s for s in self.services if self.services.count(s) > 1})
        if twice:
            raise ValueError(f"services: {', '.join(twice)} listed more than once")
        if self.order is None:
            return self
        seen: list[str] = []
        for n, wave in enumerate(self.order):
            if not wave:
                raise ValueError(f"order: wave {n + 1} is empty")
            for name in wave:
                if name not in self.services:
                    raise ValueError(f"order: {name!r} is not one of the group's services "
                                     f"({', '.join(self.services)})")
                if name in seen:
                    raise ValueError(f"order: {name!r} is in more than one place")
                seen.append(name)
        missing = [s for s in self.services if s not in seen]
        if missing:
            raise ValueError(f"order: {', '.join(missing)} in no wave (every member needs one)")
        return self

    def waves(self) -> list[list[str]]:
        """The waves to run, in order (one wave of every member when `order` is not given)."""
        return [list(w) for w in self.order] if self.order is not None else [list(self.services)]
