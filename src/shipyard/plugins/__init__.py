"""The registry of target and router kinds: what a config `type` names, and how to build it.

A kind is a `Kind`: its config `type` name, the pydantic model of its config block, and a factory
`build(config, ctx) -> Target | Router` where `config` is a validated instance of that model and `ctx`
a `BuildContext` (below). Kinds are found through entry points, the way a third-party package adds one:

    [project.entry-points."shipyard.routers"]
    recording = "shipyard_recording:KIND"        # the entry point's name is the kind's `type`

shipyard's own kinds (targets: local; routers: builtin, haproxy) are declared the same way in its
pyproject.toml and go through the same code. Discovery runs once per process (cached; `reset()` forgets
it, for tests that install a distribution on the fly). A kind whose entry point cannot be loaded, is not a
Kind, does not match its name, or is declared by two distributions is a one-line PluginError naming
the distribution: a broken plugin stops shipyard the first time it needs the registry (a config block
with a `type`, building a target or router) rather than half-working.

A factory should only construct: no I/O, nothing started (`Router.ensure()` and `Target.start()` do
that, inside the engine's steps). It imports its implementation lazily, so that `config validate`, which
reads every kind, does not load every implementation.
"""

from shipyard.plugins.context import BuildContext, build_router, build_target
from shipyard.plugins.registry import BUILTIN, GROUPS, Group, Kind, Registered, kind, kinds, registered, reset

__all__ = ["BUILTIN", "GROUPS", "BuildContext", "Group", "Kind", "Registered", "build_router", "build_target",
           "kind", "kinds", "registered", "reset"]
