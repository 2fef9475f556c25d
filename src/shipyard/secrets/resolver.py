"""Layered values of one (service, env): shipyard.yaml < environments.<env> < secret providers < --set.

Pure apart from the providers' `get` (one batched call per provider), so the rules are unit-testable
with in-memory providers. Every missing or empty required name (and every `${secret:NAME}` reference
that resolves to nothing) is collected and reported in one MissingSecretsError: the GLI teams found
JWT_SECRET missing, fixed it, and only then learned WS_PORT was missing too.

A provider value is used only for names the service declares (its env keys, `requires_env` and
`${secret:NAME}` references): a shared store holds other services' secrets, and those must not leak
into this service's processes.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from shipyard.errors import ConfigError, MissingSecretsError, UsageError
from shipyard.secrets.base import SecretProvider

SECRET_REF = re.compile(r"\$\{secret:([^}]*)\}")
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
CONFIG_SOURCE = "shipyard.yaml"
OVERRIDE_SOURCE = "override"


@dataclass(frozen=True)
class Value:
    """One name as the service will see it, and where it came from."""

    name: str
    value: str | None          # None: nothing provides it
    source: str                # "shipyard.yaml", "environments.prod", "secret:local", "override", "-"
    secret: bool               # from a provider (directly or through ${secret:...}): never shown or logged

    @property
    def missing(self) -> bool:
        return not self.value


@dataclass(frozen=True)
class Resolved:
    service: str
    env: str
    values: dict[str, Value]
    missing: list[str]
    secret_values: list[str] = field(default_factory=list)   # what the redactor must know
    refs: list[str] = field(default_factory=list)            # names used as ${secret:NAME} in the env values

    def environ(self) -> dict[str, str]:
        """The variables handed to instances and hooks (names that resolved to something)."""
        return {n: v.value for n, v in self.values.items() if v.value is not None}

    def secret_names(self) -> list[str]:
        return [n for n, v in self.values.items() if v.secret]

    def error(self) -> MissingSecretsError:
        names = ", ".join(self.missing)
        return MissingSecretsError(
            f"{self.service}/{self.env}: missing or empty: {names} (declare them under services.{self.service}.env "
            f"or set them with `shipyard secrets set NAME --env {self.env}`)", self.missing)


def secret_refs(text: str, where: str = "") -> list[str]:
    """Names referenced as `${secret:NAME}` in `text`; a malformed reference is a config error."""
    names = []
    for ref in SECRET_REF.findall(text):
        if not _NAME.fullmatch(ref):
            raise ConfigError(f"invalid secret reference ${{secret:{ref}}}: NAME must be letters, digits and '_'",
                              key=where or None)
        names.append(ref)
    return names


def _layers(config: Any, service: str, env: str) -> tuple[dict[str, tuple[str, str]], list[str]]:
    svc = config.service(service)
    config.environment(env)
    entries: dict[str, tuple[str, str]] = {n: (str(v), CONFIG_SOURCE) for n, v in svc.env.items()}
    override = svc.environments.get(env)
    if override is not None:
        entries.update({n: (str(v), f"environments.{env}") for n, v in override.env.items()})
    return entries, list(svc.requires_env)


def _lookup(providers: Sequence[SecretProvider], wanted: list[str]) -> dict[str, tuple[str, str]]:
    """name -> (value, provider label): the first provider (in order) that has the name wins."""
    found: dict[str, tuple[str, str]] = {}
    remaining = list(wanted)
    for provider in providers:
        if not remaining:
            break
        got = provider.get(remaining)
        found.update({n: (v, provider.label) for n, v in got.items() if n in remaining})
        remaining = [n for n in remaining if n not in got]
    return found


def resolve(config: Any, service: str, env: str, providers: Sequence[SecretProvider],
            overrides: Mapping[str, str] | None = None, *, strict: bool = True) -> Resolved:
    """Resolve every declared name of (service, env); with `strict`, raise on anything missing."""
    entries, required = _layers(config, service, env)
    refs = {n: secret_refs(raw, f"services.{service}.env.{n}") for n, (raw, _) in entries.items()}
    all_refs = list(dict.fromkeys(r for names in refs.values() for r in names))
    declared = list(dict.fromkeys([*entries, *required]))
    found = _lookup(providers, list(dict.fromkeys([*declared, *all_refs])))

    values: dict[str, Value] = {}
    missing_refs: list[str] = []
    secrets: list[str] = []
    for name in declared:
        if name in found:
            value, label = found[name]
            values[name] = Value(name, value, f"secret:{label}", True)
            secrets.append(value)
        elif name in entries:
            raw, source = entries[name]
            absent = [r for r in refs[name] if r not in found]
            missing_refs += [r for r in absent if r not in missing_refs]
            text = SECRET_REF.sub(lambda m: found[m.group(1)][0] if m.group(1) in found else "", raw)
            values[name] = Value(name, None if absent else text, source, bool(refs[name]))
            if refs[name] and not absent:
                secrets += [text, *(found[r][0] for r in refs[name])]
        else:
            values[name] = Value(name, None, "-", False)

    # Backed by a secret even when no provider has it today: a `${secret:NAME}` reference, or a required
    # name shipyard.yaml gives no value (it can only come from a provider).
    secret_backed = set(all_refs) | {n for n in required if n not in entries}
    for name, value in (overrides or {}).items():
        current = values.get(name)
        if (current is not None and current.secret) or name in secret_backed:
            raise UsageError(f"--set {name}: {name} is a secret; secrets never go on the command line "
                             f"(use `shipyard secrets set {name} --env {env}`)")
        values[name] = Value(name, value, OVERRIDE_SOURCE, False)

    missing = [n for n in required if values[n].missing]
    missing += [r for r in missing_refs if r not in missing]
    result = Resolved(service, env, values, missing, list(dict.fromkeys(s for s in secrets if s)), all_refs)
    if strict and missing:
        raise result.error()
    return result
