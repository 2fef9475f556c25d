"""GitOps, the pure part: watched branches and planned deploys from a config, webhook signature and token
checks, GitHub/GitLab push payloads, and matching a payload's URLs to a configured repo."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from shipyard.config import load_config
from shipyard.daemon import gitops as g
from shipyard.errors import UsageError

SHA, OTHER = "a" * 40, "b" * 40
CONFIG = """\
project: demo
repos:
  app: {url: "git@github.com:Acme/App.git"}
  site: {url: "https://gitlab.example.com/web/site.git", path: site}
  docs: {path: docs}
environments:
  dev: {branch: dev, auto_deploy: true}
  qa: {branch: dev, auto_deploy: true}
  stg: {branch: stg, promote_from: dev}
  prod: {branch: main, promote_from: stg, auto_deploy: true}
services:
  api: {repo: app, run: "python app.py"}
  worker: {repo: app, run: "python worker.py"}
  web: {repo: site, run: "python web.py"}
"""


@pytest.fixture
def config(tmp_path: Path):  # type: ignore[no-untyped-def]
    (tmp_path / "shipyard.yaml").write_text(CONFIG)
    return load_config(tmp_path / "shipyard.yaml")


def test_watched_branches_and_planned_deploys(config) -> None:  # type: ignore[no-untyped-def]
    watched = g.watches(config)
    # docs holds no service; stg has no auto_deploy; dev is one branch for two envs.
    assert [(w.repo, w.branch) for w in watched] == [("app", "dev"), ("app", "main"), ("site", "dev"),
                                                      ("site", "main")]
    assert watched[0].location == "git@github.com:Acme/App.git"
    assert watched[0].targets == (("api", "dev"), ("worker", "dev"), ("api", "qa"), ("worker", "qa"))
    planned = g.plan(watched, "app", "main", SHA)
    assert [(p.service, p.env, p.sha) for p in planned] == [("api", "prod", SHA), ("worker", "prod", SHA)]
    assert g.plan(watched, "app", "stg", SHA) == [] and g.plan(watched, "docs", "dev", SHA) == []


def test_no_auto_deploy_watches_nothing(tmp_path: Path) -> None:
    (tmp_path / "shipyard.yaml").write_text(CONFIG.replace("auto_deploy: true", "auto_deploy: false"))
    assert g.watches(load_config(tmp_path / "shipyard.yaml")) == []


def test_ls_remote_output() -> None:
    out = f"{SHA}\trefs/heads/dev\n{OTHER}\trefs/heads/dev-old\n"
    assert g.parse_ls_remote(out, "dev") == SHA
    assert g.parse_ls_remote(out, "main") is None
    assert g.parse_ls_remote("garbage\trefs/heads/dev\n", "dev") is None


@pytest.mark.parametrize(("url", "expected"), [
    ("git@github.com:Acme/App.git", "github.com/acme/app"),
    ("https://github.com/acme/app", "github.com/acme/app"),
    ("https://user:pw@GitHub.com/acme/app.git/", "github.com/acme/app"),
    ("ssh://git@github.com:22/acme/app.git", "github.com/acme/app"),
    ("git://github.com/acme/app.git", "github.com/acme/app"),
    ("/srv/git/app.git", "/srv/git/app"),
    ("file:///srv/git/app.git/", "/srv/git/app"),
])
def test_urls_are_normalised(url: str, expected: str) -> None:
    assert g.normalise_url(url) == expected


def _github(**over: object) -> bytes:
    body = {"ref": "refs/heads/main", "after": SHA, "pusher": {"name": "alice"},
            "repository": {"full_name": "acme/app", "clone_url": "https://github.com/acme/app.git",
                           "ssh_url": "git@github.com:acme/app.git", "html_url": "https://github.com/acme/app"}}
    body.update(over)
    return json.dumps(body).encode()


def _gitlab(**over: object) -> bytes:
    body = {"object_kind": "push", "ref": "refs/heads/dev", "after": SHA, "checkout_sha": SHA,
            "user_username": "bob", "project": {"path_with_namespace": "web/site",
                                                "git_http_url": "https://gitlab.example.com/web/site.git",
                                                "git_ssh_url": "git@gitlab.example.com:web/site.git"}}
    body.update(over)
    return json.dumps(body).encode()


def test_payloads_parse_and_match_their_repo(config) -> None:  # type: ignore[no-untyped-def]
    push = g.parse_github(_github())
    assert (push.source, push.branch, push.after, push.pusher) == ("github", "main", SHA, "alice")
    assert g.matching_repos(config.repos, push) == ["app"]
    # By full_name alone (no URL given), and not at all for another repository.
    assert g.matching_repos(config.repos, g.parse_github(_github(repository={"full_name": "Acme/App"}))) == ["app"]
    assert g.matching_repos(config.repos, g.parse_github(_github(repository={"full_name": "acme/other",
                                                                             "clone_url": "x"}))) == []
    lab = g.parse_gitlab(_gitlab())
    assert (lab.source, lab.branch, lab.pusher) == ("gitlab", "dev", "bob")
    assert g.matching_repos(config.repos, lab) == ["site"]
    assert g.parse_gitlab(_gitlab(after=None)).after == SHA            # checkout_sha when `after` is absent
    assert g.parse_gitlab(_gitlab(user_username="eve\nFAKE: line " + "x" * 300)).pusher == "eve FAKE: line " + \
        "x" * 240


def test_what_is_ignored() -> None:
    watched = {"dev", "main"}
    assert g.ignored_because(g.parse_github(_github()), watched) is None
    deleted = g.parse_github(_github(after=g.ZERO_SHA))
    assert "deleted" in (g.ignored_because(deleted, watched) or "")
    assert "not a branch" in (g.ignored_because(g.parse_github(_github(ref="refs/tags/v1")), watched) or "")
    assert "branch feature" in (g.ignored_because(g.parse_github(_github(ref="refs/heads/feature")), watched) or "")


@pytest.mark.parametrize(("body", "message"), [
    (b"not json", "not JSON"), (b"[1]", "not a JSON object"), (b"\xff\xfe", "not JSON"),
    (_github(ref=None), "no `ref`"), (_github(after="nope"), "not a commit sha"), (_github(after=7), "not a commit"),
])
def test_bad_payloads_are_one_line(body: bytes, message: str) -> None:
    with pytest.raises(UsageError, match=message):
        g.parse_github(body)


def test_github_signature() -> None:
    body = _github()
    good = g.github_signature("s3cret", body)
    assert good.startswith("sha256=") and len(good) == 7 + 64
    assert g.verify_github("s3cret", body, good)
    assert g.verify_github("s3cret", body, good.upper().replace("SHA256=", "sha256="))   # hex case
    for header in (None, "", "sha256=", good[:-1], "sha1=" + good[7:], good[7:],
                   g.github_signature("other", body), "sha256=" + "zz" * 32):
        assert not g.verify_github("s3cret", body, header), header
    assert not g.verify_github("s3cret", body + b" ", good)          # the body itself is signed


def test_gitlab_token() -> None:
    assert g.verify_gitlab("t0ken", "t0ken")
    for header in (None, "", "t0ke", "t0ken ", "T0KEN"):
        assert not g.verify_gitlab("t0ken", header), header


def _gitops(config, secrets):  # type: ignore[no-untyped-def]
    from shipyard.daemon.gitops_watch import GitOps

    # No store and no runner: every refusal below comes before either is touched.
    return GitOps(config, Path("."), None, None, interval=60, secrets=secrets)  # type: ignore[arg-type]


def test_webhook_refusals_before_anything_is_recorded(config) -> None:  # type: ignore[no-untyped-def]
    import asyncio

    from shipyard.daemon.gitops_watch import HookRefused, WebhookSecrets, resolve_secrets
    from shipyard.errors import MissingSecretsError

    def fill(text: str, what: str) -> str:
        if "MISSING" in text:
            raise MissingSecretsError(f"{what} secrets not set: MISSING", ["MISSING"])
        return "s3cret"

    class Hooks:
        github_secret = "${secret:GH}"
        gitlab_token = "${secret:MISSING}"

    secrets = resolve_secrets(Hooks(), fill)
    assert secrets.github == "s3cret" and secrets.gitlab is None and "MISSING" in secrets.missing["gitlab"]
    body = _github()
    signed = {"x-github-event": "push", "x-hub-signature-256": g.github_signature("s3cret", body)}
    cases = [
        (secrets, {}, 401, "unsigned"),
        (secrets, {"x-gitlab-token": "s3cret", "x-gitlab-event": "Push Hook"}, 403, "secrets not set: MISSING"),
        (WebhookSecrets(), signed, 403, "serve.webhooks.github_secret is not configured"),
        (secrets, {**signed, "x-hub-signature-256": "sha256=00"}, 401, "does not match"),
        (secrets, signed, 400, "delivery id"),
        (secrets, {**signed, "x-github-delivery": "x" * 256}, 400, "delivery id"),
    ]
    for given, headers, status, message in cases:
        with pytest.raises(HookRefused, match=message) as caught:
            asyncio.run(_gitops(config, given).receive(headers, body))
        assert caught.value.status == status
