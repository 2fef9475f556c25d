"""`shipyard secrets set|get|list|rm|diff|generate|sync github`: manage secret values per environment.

Values enter through stdin or a hidden prompt, never argv (visible in `ps` and shell history), and
leave only through `get` (its purpose) or `sync github` (sealed for GitHub). Everything else prints
names. Every change and every read is an audit event naming who and which names, never values.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Annotated

import typer

from shipyard.cli import render
from shipyard.cli.project import Project, actor
from shipyard.errors import UsageError
from shipyard.secrets import generate as gen
from shipyard.secrets.base import SecretProvider, check_name
from shipyard.secrets.context import audit
from shipyard.secrets.github import DEFAULT_API, TOKEN_ENV, GitHubSecrets

app = typer.Typer(help="Secret values per environment: set, get, list, rm, diff, generate, sync.",
                  no_args_is_help=True)
sync_app = typer.Typer(help="Copy secret values to another system.", no_args_is_help=True)
app.add_typer(sync_app, name="sync")

ConfigOpt = Annotated[Path | None, typer.Option("--config", "-c", help="Path to shipyard.yaml.")]
EnvOpt = Annotated[str, typer.Option("--env", "-e", help="Environment whose secrets to use.")]
ProviderOpt = Annotated[str | None, typer.Option(
    "--provider", help="local, env, aws-secretsmanager or aws-ssm (default: secrets.provider).")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON.")]
NameArg = Annotated[str, typer.Argument(help="Secret name (an environment variable name).")]


def _provider(project: Project, env: str, name: str | None, *, write: bool = False) -> SecretProvider:
    provider = project.secrets.provider(env, name)
    if write and not provider.writable:
        raise UsageError(f"the {provider.label} provider is read-only; choose another with --provider")
    return provider


def _read_value(name: str) -> str:
    """From stdin when it is not a terminal (pipes, CI), else a hidden prompt asked twice."""
    if sys.stdin is None or not sys.stdin.isatty():
        value = sys.stdin.read() if sys.stdin is not None else ""
        value = value[:-1] if value.endswith("\n") else value
        value = value[:-1] if value.endswith("\r") else value
    else:
        value = typer.prompt(f"value of {name}", hide_input=True, confirmation_prompt=True)
    if not value:
        raise UsageError(f"{name}: empty value, nothing stored (pipe the value on stdin or type it at the prompt)")
    return value


@app.command("set")
def set_cmd(name: NameArg, env: EnvOpt, provider: ProviderOpt = None, config: ConfigOpt = None) -> None:
    """Store NAME for ENV, reading the value from stdin or a hidden prompt (never from the command line)."""
    project = Project.load(config)
    store = _provider(project, env, provider, write=True)
    check_name(name)
    value = _read_value(name)
    project.secrets.track(value)
    store.set(name, value)
    audit(project.store, "secrets.set", env=env, actor=actor(), names=[name], provider=store.label)
    render.info(f"set {name} in {env} ({store.label})")


@app.command("get")
def get_cmd(name: NameArg, env: EnvOpt, provider: ProviderOpt = None, as_json: JsonOpt = False,
            config: ConfigOpt = None) -> None:
    """Print the value of NAME in ENV (recorded in the audit trail)."""
    project = Project.load(config)
    store = _provider(project, env, provider)
    found = store.get([name])
    if name not in found:
        raise UsageError(f"no secret {name} in {env} ({store.label}); see `shipyard secrets list --env {env}`")
    audit(project.store, "secrets.read", env=env, actor=actor(), names=[name], provider=store.label)
    if as_json:
        render.reveal_json({"env": env, "name": name, "provider": store.label, "value": found[name]})
    else:
        render.reveal(found[name])


@app.command("list")
def list_cmd(env: EnvOpt, provider: ProviderOpt = None, as_json: JsonOpt = False, config: ConfigOpt = None) -> None:
    """Names stored for ENV in each provider read (never values)."""
    project = Project.load(config)
    stores = [_provider(project, env, provider)] if provider else project.secrets.chain(env)
    rows = [(name, s.label) for s in stores for name in s.list()]
    if as_json:
        render.print_json({"env": env, "secrets": [{"name": n, "provider": p} for n, p in rows]})
    elif not rows:
        render.info(f"no secrets stored for {env} ({', '.join(s.label for s in stores)})")
    else:
        render.table(f"secrets of {env}", ["name", "provider"], rows)


@app.command("rm")
def rm_cmd(name: NameArg, env: EnvOpt, provider: ProviderOpt = None, config: ConfigOpt = None) -> None:
    """Remove NAME from ENV."""
    project = Project.load(config)
    store = _provider(project, env, provider, write=True)
    if not store.delete(name):
        raise UsageError(f"no secret {name} in {env} ({store.label})")
    audit(project.store, "secrets.deleted", env=env, actor=actor(), names=[name], provider=store.label)
    render.info(f"removed {name} from {env} ({store.label})")


@app.command("diff")
def diff_cmd(
    env_a: Annotated[str, typer.Argument(help="One environment.")],
    env_b: Annotated[str, typer.Argument(help="The other environment.")],
    as_json: JsonOpt = False,
    config: ConfigOpt = None,
) -> None:
    """Which secret names exist in one environment but not the other (names only, never values)."""
    project = Project.load(config)
    have = {env: {n for s in project.secrets.chain(env) for n in s.list()} for env in (env_a, env_b)}
    names = sorted(have[env_a] | have[env_b])
    only_a = [n for n in names if n not in have[env_b]]
    only_b = [n for n in names if n not in have[env_a]]
    if as_json:
        render.print_json({"envs": [env_a, env_b], "names": {n: [e for e in (env_a, env_b) if n in have[e]]
                                                              for n in names},
                           "only_in": {env_a: only_a, env_b: only_b}})
        return
    mark = {True: "✓", False: "-"}
    render.table(f"secrets: {env_a} vs {env_b}", ["name", env_a, env_b],
                 [(n, mark[n in have[env_a]], mark[n in have[env_b]]) for n in names])
    render.info(f"only in {env_a}: {', '.join(only_a) or 'none'}; only in {env_b}: {', '.join(only_b) or 'none'}")


@app.command("generate")
def generate_cmd(
    env: EnvOpt,
    django_key: Annotated[list[str] | None, typer.Option("--django-key", help="NAME for a Django SECRET_KEY.")]
    = None,
    token: Annotated[list[str] | None, typer.Option("--token", help="NAME for a random token.")] = None,
    length: Annotated[int, typer.Option("--length", help="Length of --token values.", min=8, max=4096)] = 48,
    jwt_rsa: Annotated[list[str] | None, typer.Option(
        "--jwt-rsa", help="NAME: an RS256 key pair stored as NAME_PRIVATE_KEY and NAME_PUBLIC_KEY (PEM).")] = None,
    force: Annotated[bool, typer.Option("--force", help="Replace values that exist already.")] = False,
    provider: ProviderOpt = None,
    config: ConfigOpt = None,
) -> None:
    """Generate new values into ENV's provider; prints only their names."""
    project = Project.load(config)
    store = _provider(project, env, provider, write=True)
    makers: dict[str, str] = {}
    for name in django_key or []:
        makers[check_name(name)] = gen.django_key()
    for name in token or []:
        makers[check_name(name)] = gen.token(length)
    for name in jwt_rsa or []:
        makers[check_name(name) + "_PRIVATE_KEY"], makers[name + "_PUBLIC_KEY"] = gen.jwt_rsa()
    if not makers:
        raise UsageError("nothing to generate: give --django-key, --token or --jwt-rsa NAME")
    project.secrets.track(*makers.values())
    existing = sorted(set(store.get(list(makers))))
    if existing and not force:
        raise UsageError(f"already set in {env} ({store.label}): {', '.join(existing)}; use --force to replace")
    for name, value in makers.items():
        store.set(name, value)
    audit(project.store, "secrets.generated", env=env, actor=actor(), names=list(makers), provider=store.label)
    render.info(f"generated in {env} ({store.label}): {', '.join(makers)}")


@sync_app.command("github")
def sync_github_cmd(
    repo: Annotated[str, typer.Option("--repo", help="owner/name of the GitHub repository.")],
    env: EnvOpt,
    names: Annotated[list[str] | None, typer.Option(
        "--names", help="Only these names (comma-separated or repeated); default: every secret the services "
                        "use (values from providers and ${secret:NAME} references).")] = None,
    service: Annotated[list[str] | None, typer.Option("--service", "-s", help="Only these services' secrets.")]
    = None,
    github_env: Annotated[str | None, typer.Option(
        "--github-env", help="Write environment secrets of this GitHub environment instead of repo secrets.")]
    = None,
    api_url: Annotated[str, typer.Option("--api-url", help="GitHub API (GitHub Enterprise: https://HOST/api/v3).")]
    = DEFAULT_API,
    as_json: JsonOpt = False,
    config: ConfigOpt = None,
) -> None:
    """Write secret values as GitHub Actions secrets (sealed with the repository's public key).

    The token is read from GITHUB_TOKEN.
    """
    project = Project.load(config)
    token_value = os.environ.get(TOKEN_ENV)
    if not token_value:
        raise UsageError(f"set {TOKEN_ENV} to a token that may write the repository's Actions secrets")
    wanted = [n.strip() for item in names or [] for n in item.split(",") if n.strip()]
    if not wanted:
        for svc in service or list(project.config.services):
            resolved = project.secrets.resolve(svc, env)
            wanted += resolved.refs + [n for n, v in resolved.values.items() if v.source.startswith("secret:")]
    wanted = list(dict.fromkeys(check_name(n) for n in wanted))
    if not wanted:
        raise UsageError(f"no secrets to sync for {env}: the services use none (or give --names)")
    values: dict[str, str] = {}
    for store in project.secrets.chain(env):
        values.update({k: v for k, v in store.get([n for n in wanted if n not in values]).items()})
    project.secrets.track(*values.values())
    missing = [n for n in wanted if not values.get(n)]
    if missing:
        raise UsageError(f"{env}: missing or empty: {', '.join(missing)} (set them with "
                         f"`shipyard secrets set NAME --env {env}`); nothing was written to GitHub")
    client = GitHubSecrets(repo, token_value, api_url=api_url, environment=github_env)
    try:
        result = client.sync({n: values[n] for n in wanted})
    finally:
        client.close()
    audit(project.store, "secrets.synced", env=env, actor=actor(), names=wanted, target=f"github:{repo}",
          github_env=github_env)
    if as_json:
        render.print_json({"repo": repo, "env": env, "created": result.created, "updated": result.updated})
    else:
        render.table(f"GitHub secrets of {repo}" + (f" ({github_env})" if github_env else ""), ["name", "result"],
                     [(n, "created") for n in result.created] + [(n, "updated") for n in result.updated])
