"""`${VAR}` and `${VAR:-default}` substitution from the environment in config string values.

`${secret:NAME}` is left as written for the secrets layer (so secret values never pass through the
config or its error messages), and `$${` writes a literal `${` for commands that expand variables
themselves at run time. A bare `$VAR` is never touched, for the same reason.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

_REFERENCE = re.compile(r"\$\$\{|\$\{([^}]*)\}")
_EXPR = re.compile(r"(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?::-(?P<default>.*))?", re.DOTALL)


def interpolate(text: str, environ: Mapping[str, str]) -> tuple[str, list[tuple[int, str]]]:
    """Return (text with references replaced, problems as (offset in text, message))."""
    if "${" not in text:
        return text, []
    problems: list[tuple[int, str]] = []

    def replace(match: re.Match[str]) -> str:
        if match.group(0) == "$${":
            return "${"
        expr = match.group(1)
        if expr.startswith("secret:"):
            return match.group(0)
        parsed = _EXPR.fullmatch(expr)
        if parsed is None:
            problems.append((match.start(), f"invalid reference ${{{expr}}}: use ${{VAR}}, ${{VAR:-default}} "
                                            "or ${secret:NAME} ($${ for a literal)"))
            return match.group(0)
        name, default = parsed.group("name"), parsed.group("default")
        value = environ.get(name)
        if value:
            return value
        if default is not None:
            return default
        if value is not None:
            return value
        problems.append((match.start(), f"environment variable {name} is not set "
                                        f"(use ${{{name}:-default}}, or $${{ for a literal ${{)"))
        return match.group(0)

    return _REFERENCE.sub(replace, text), problems
