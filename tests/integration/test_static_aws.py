"""The static target through the real CLI against moto in server mode: a built site uploaded under its
release prefix, byte for byte with the right headers, the distribution switched and invalidated, only
changed objects uploaded again, rollback as an OriginPath flip with no upload, pruning, and the refusals
(empty names = config error before anything, a bucket AWS does not have = one line). What is and is not
checked against moto is said once, in tests/integration/static_site.py."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from static_site import SITE, Site, aws_env, make_site

from shipyard.agent.daemon import stop_agent
from shipyard.cli.project import Project
from shipyard.domain.deployment import DeployState
from shipyard.engine import deployer
from shipyard.store import deployments as dq
from shipyard.testing.cli import run_cli

pytestmark = pytest.mark.timeout(240)


@pytest.fixture
def site(tmp_path: Path, moto_endpoint: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[Site]:
    for key, value in aws_env().items():
        if key.startswith("AWS_"):
            monkeypatch.setenv(key, value)
    for key in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_ENDPOINT_URL"):
        monkeypatch.delenv(key, raising=False)
    made = make_site(tmp_path / "p", moto_endpoint)
    try:
        yield made
    finally:
        stop_agent(made.root / ".shipyard" / "agent", stop_instances=True)


def ok(res: object) -> None:
    assert getattr(res, "returncode", None) == 0, str(res)
    assert "Traceback" not in str(res), str(res)


def one_error(res: object, code: int) -> str:
    assert getattr(res, "returncode", None) == code, str(res)
    text = str(res)
    assert "Traceback" not in text, text
    lines = getattr(res, "error_lines")  # noqa: B009 (CliResult)
    assert len(lines) == 1, text
    return str(lines[0])


async def test_deploy_redeploy_change_rollback_prune(site: Site) -> None:
    v1 = site.commit(SITE, "v1")
    ok(site.cli("deploy", "web", "--env", "prod"))                 # the first one through the real CLI
    prefix1 = f"releases/{v1}/"
    got = site.objects(prefix1)
    assert {k: v["body"] for k, v in got.items()} == SITE          # byte for byte, nothing else
    assert got["index.html"]["type"] == "text/html; charset=utf-8"
    assert got["index.html"]["cache"] == "no-cache"
    assert got["about/index.html"]["cache"] == "no-cache"
    assert got["assets/app.1a2b3c4d.js"]["type"] == "text/javascript; charset=utf-8"
    assert got["assets/app.1a2b3c4d.js"]["cache"] == "public, max-age=31536000, immutable"
    assert got["assets/app.1a2b3c4d.js.map"]["type"] == "application/json"
    assert got["assets/style.9f8e7d6c.css"]["type"] == "text/css; charset=utf-8"
    assert got["logo.svg"]["type"] == "image/svg+xml" and got["logo.svg"]["cache"] == "public, max-age=300"
    assert got["fonts/inter.woff2"]["type"] == "font/woff2"
    assert site.origin_path() == f"/releases/{v1}"
    assert site.invalidations() == 1
    assert site.last_record()["uploaded"] == len(SITE)
    status = site.cli("status", "--json")
    ok(status)
    assert [(r["service"], r["revision"], r["instances"]) for r in status.json()["status"]] == [("web", v1, [])]

    # The same revision again: every object is already there.
    assert (await deployer.deploy(site.environment())).state is DeployState.SUCCEEDED
    assert site.last_record()["uploaded"] == 0 and site.last_record()["unchanged"] == len(SITE)

    # A changed build: only the two files that changed go up; the others are copied inside S3 from v1's.
    v2_files = {**SITE, "index.html": SITE["index.html"].replace(b"GLI", b"GLI v2"),
                "assets/app.5e6f7a8b.js": b"console.log('v2')"}
    v2 = site.commit(v2_files, "v2")
    assert (await deployer.deploy(site.environment())).state is DeployState.SUCCEEDED
    record = site.last_record()
    assert (record["uploaded"], record["copied"], record["unchanged"]) == (2, len(SITE) - 1, 0)
    v2_got = site.objects(f"releases/{v2}/")
    assert {k: v["body"] for k, v in v2_got.items()} == v2_files
    assert v2_got["robots.txt"]["cache"] == "public, max-age=300"     # a copy keeps its headers
    assert v2_got["assets/app.5e6f7a8b.js"]["cache"] == "public, max-age=31536000, immutable"
    assert site.origin_path() == f"/releases/{v2}"
    assert site.invalidations() == 3

    # `shipyard rollback`: OriginPath back to v1's prefix, nothing uploaded, v1's objects untouched.
    rolled = site.cli("rollback", "web", "--env", "prod", "--json")
    ok(rolled)
    assert rolled.json()["revision"] == v1 and rolled.json()["state"] == "succeeded", str(rolled)
    assert site.origin_path() == f"/releases/{v1}"
    record = site.last_record()
    assert record["uploaded"] == 0 and record["prefix"] == prefix1 and record["was"] == f"/releases/{v2}"
    assert {k: v["body"] for k, v in site.objects(prefix1).items()} == SITE
    assert site.invalidations() == 4

    # One more release with keep: 2: v2's prefix goes; v3 (live) and v1 (previous) stay.
    v3 = site.commit({**SITE, "robots.txt": b"v3"}, "v3")
    assert (await deployer.deploy(site.environment())).state is DeployState.SUCCEEDED
    assert site.prefixes() == {f"releases/{v1}/", f"releases/{v3}/"}
    assert site.origin_path() == f"/releases/{v3}"


async def test_a_changed_build_of_one_prefix_uploads_only_what_changed(site: Site) -> None:
    """Same revision, a build that writes one file differently (the build's inputs changed): only that
    object goes up, and a file the build no longer writes is deleted from the prefix."""
    (site.repo / "build.py").write_text(
        "import os, pathlib\nv = os.environ.get('SITE_VERSION', '1')\n"
        "for n in range(6):\n"
        "    p = pathlib.Path('dist/assets'); p.mkdir(parents=True, exist_ok=True)\n"
        "    (p / f'chunk{n}.0000000{n}.js').write_text(f'chunk {n}')\n"
        "pathlib.Path('dist/index.html').write_text(f'<p>version {v}</p>')\n"
        "if v == '1':\n    pathlib.Path('dist/old.txt').write_text('gone in v2')\n")
    site.commit({}, "builder")
    site.config(service="build: python3 build.py\n    env: {SITE_VERSION: '1'}")
    assert (await deployer.deploy(site.environment())).state is DeployState.SUCCEEDED
    assert site.last_record()["uploaded"] == 8
    site.config(service="build: python3 build.py\n    env: {SITE_VERSION: '2'}")
    assert (await deployer.deploy(site.environment())).state is DeployState.SUCCEEDED
    record = site.last_record()
    assert (record["uploaded"], record["unchanged"], record["deleted"]) == (1, 6, 1)
    sha = record["revision"]
    got = site.objects(f"releases/{sha}/")
    assert got["index.html"]["body"] == b"<p>version 2</p>" and "old.txt" not in got


def test_empty_bucket_or_distribution_is_a_config_error_before_anything(site: Site) -> None:
    site.commit(SITE, "v1")
    site.config(bucket="")
    line = one_error(site.cli("deploy", "web", "--env", "prod"), 2)
    assert "bucket" in line and "empty" in line
    site.config(distribution="  ")
    line = one_error(site.cli("deploy", "web", "--env", "prod"), 2)
    assert "distribution_id" in line
    assert site.objects() == {} and site.origin_path() == ""


def test_aws_refusing_is_one_line_and_nothing_moves(site: Site) -> None:
    site.commit(SITE, "v1")
    site.config(bucket="gli-no-such-bucket", distribution="E0000NOSUCH")
    line = one_error(site.cli("deploy", "web", "--env", "prod"), 1)
    # Every gap at once: the bucket and the distribution.
    assert "gli-no-such-bucket does not exist" in line and "E0000NOSUCH does not exist" in line, line
    assert site.objects() == {} and site.origin_path() == ""


async def test_failing_health_rolls_back_to_the_previous_prefix(site: Site) -> None:
    v1 = site.commit(SITE, "v1")
    assert (await deployer.deploy(site.environment())).state is DeployState.SUCCEEDED
    site.commit({**SITE, "robots.txt": b"v2"}, "v2")
    # The site URL answers nothing: the live release is unhealthy, the origin goes back to v1.
    site.config(extra=', url: "http://127.0.0.1:9/"')
    out = await deployer.deploy(site.environment())
    assert out.state is DeployState.ROLLED_BACK and "GET http://127.0.0.1:9/" in (out.reason or ""), out
    assert site.origin_path() == f"/releases/{v1}"
    assert f"releases/{v1}/" in site.prefixes()


async def test_a_deploy_killed_after_its_switch_is_rolled_back_by_recover(site: Site) -> None:
    v1 = site.commit(SITE, "v1")
    assert (await deployer.deploy(site.environment())).state is DeployState.SUCCEEDED
    v2 = site.commit({**SITE, "robots.txt": b"v2"}, "v2")
    # Killed (SIGKILL) right after step 2, the activation: v2 is live and nobody is left to finish.
    env = {**aws_env(), "SHIPYARD_FAILPOINT": "after-step:1"}
    killed = run_cli(site.root, "deploy", "web", "--env", "prod", env=env, timeout=120)
    assert killed.returncode == -9, str(killed)
    assert site.origin_path() == f"/releases/{v2}"
    ok(site.cli("recover"))
    assert site.origin_path() == f"/releases/{v1}"
    assert site.invalidations() == 3
    project = Project.load(site.root / "shipyard.yaml")
    with project.store.session(readonly=True) as ses:
        last = dq.list_deployments(ses, service="web", env="prod", limit=1)[0]
    assert last.revision == v2 and last.state == DeployState.ROLLED_BACK.value


def test_the_iam_policy_names_the_bucket_prefixes_and_distribution(site: Site) -> None:
    import json

    import boto3

    from shipyard.aws.policy import Scope, policy
    from shipyard.config import load_config
    from shipyard.engine.settings import service_settings

    cfg = load_config(site.root / "shipyard.yaml")
    doc = policy(cfg, [service_settings(cfg, site.root, "web", "prod")], Scope("123456789012"))
    by_sid = {s["Sid"]: s for s in doc["Statement"]}
    assert by_sid["StaticSiteBucketList"]["Resource"] == f"arn:aws:s3:::{site.bucket}"
    assert by_sid["StaticSiteReleases"]["Resource"] == f"arn:aws:s3:::{site.bucket}/releases/*"
    assert by_sid["StaticSiteDistribution"]["Resource"] == \
        f"arn:aws:cloudfront::123456789012:distribution/{site.distribution}"
    iam = boto3.client("iam", region_name="us-east-1", endpoint_url=site.endpoint)
    made = iam.create_policy(PolicyName=f"shipyard-{site.bucket}", PolicyDocument=json.dumps(doc))
    assert made["Policy"]["Arn"].endswith(f"shipyard-{site.bucket}")


async def test_rolling_back_to_a_pruned_release_says_so_and_keeps_the_live_one(site: Site) -> None:
    # Someone else's objects beside the releases: pruning never touches them.
    site.s3.put_object(Bucket=site.bucket, Key="releases/manual-backup/index.html", Body=b"keep me")
    site.s3.put_object(Bucket=site.bucket, Key="releases/NOTES.txt", Body=b"keep me too")
    shas = []
    for n in (1, 2, 3):
        shas.append(site.commit({**SITE, "robots.txt": f"v{n}".encode()}, f"v{n}"))
        assert (await deployer.deploy(site.environment())).state is DeployState.SUCCEEDED
    v1, v2, v3 = shas
    assert site.prefixes() == {f"releases/{v2}/", f"releases/{v3}/", "releases/manual-backup/"}   # v1 pruned
    assert set(site.objects("releases/")) >= {"manual-backup/index.html", "NOTES.txt"}
    assert (await deployer.rollback(site.environment())).revision == v2
    assert site.origin_path() == f"/releases/{v2}"
    out = await deployer.rollback(site.environment())                       # further back: v1, pruned
    assert out.revision == v1 and out.state is DeployState.ROLLED_BACK, out
    assert f"releases/{v1}/ is empty (pruned?)" in (out.reason or ""), out
    assert site.origin_path() == f"/releases/{v2}"


async def test_a_cloudwatch_alarm_during_the_bake_switches_the_origin_back(site: Site) -> None:
    import boto3

    v1 = site.commit(SITE, "v1")
    assert (await deployer.deploy(site.environment())).state is DeployState.SUCCEEDED
    cw = boto3.client("cloudwatch", region_name="us-east-1", endpoint_url=site.endpoint)
    alarm = f"{site.bucket}-5xx"
    cw.put_metric_alarm(AlarmName=alarm, MetricName="5xxErrorRate", Namespace="AWS/CloudFront", Statistic="Average",
                        Period=60, EvaluationPeriods=1, Threshold=5.0, ComparisonOperator="GreaterThanThreshold")
    cw.set_alarm_state(AlarmName=alarm, StateValue="ALARM", StateReason="5xx rate 12% (test)")
    site.config(deploy=f"bake: 60s\n      alarms: [{{cloudwatch: {alarm}, region: us-east-1, "
                       f"endpoint_url: \"{site.endpoint}\", poll: 1s}}]")
    v2 = site.commit({**SITE, "robots.txt": b"v2"}, "v2")
    out = await deployer.deploy(site.environment())
    assert out.state is DeployState.ROLLED_BACK and alarm in (out.reason or ""), out
    assert site.origin_path() == f"/releases/{v1}" and f"releases/{v2}/" in site.prefixes()
