"""A project with a static site deployed to S3 + CloudFront on moto (server mode), driven through the real CLI.

What is checked against moto, in one place (moto serves the S3 and CloudFront APIs, never CloudFront
traffic): every object of a release is fetched back through moto's S3 endpoint and compared byte for byte
with the build, with its Content-Type and Cache-Control; the distribution's OriginPath is read back with
GetDistributionConfig; invalidations are listed with ListInvalidations (moto completes them at once, so
the wait loop ends on its first look); an alarm's state is what the test set with SetAlarmState (moto
evaluates no metrics). What a viewer would get from the CloudFront edge is not checked.
"""

from __future__ import annotations

import json
import os
import subprocess
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3

from shipyard.agent.client import AgentClient
from shipyard.cli.project import Project
from shipyard.engine.environment import Environment
from shipyard.testing.cli import CliResult, run_cli

REGION = "us-east-1"

SITE = {
    "index.html": b"<!doctype html><title>GLI</title><script src=/assets/app.1a2b3c4d.js></script>",
    "about/index.html": b"<p>about</p>",
    "assets/app.1a2b3c4d.js": b"console.log('v1')",
    "assets/app.1a2b3c4d.js.map": b'{"version":3}',
    "assets/style.9f8e7d6c.css": b"body{color:#123}",
    "logo.svg": b"<svg xmlns='http://www.w3.org/2000/svg'/>",
    "fonts/inter.woff2": bytes(range(256)) * 4,
    "robots.txt": b"User-agent: *\n",
}


def aws_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SHIPYARD_", "AWS_"))}
    env.update(CI="true", NO_COLOR="1", TERM="dumb", COLUMNS="100", SHIPYARD_ACTOR="static-test",
               AWS_ACCESS_KEY_ID="testing", AWS_SECRET_ACCESS_KEY="testing", AWS_DEFAULT_REGION=REGION)
    return env


def git(cwd: Path, *args: str) -> str:
    return subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@t", *args], cwd=cwd, check=True,
                          capture_output=True, text=True, timeout=30).stdout.strip()


def make_distribution(cf: Any, bucket: str) -> str:
    made = cf.create_distribution(DistributionConfig={
        "CallerReference": f"test-{bucket}", "Comment": "gli web", "Enabled": True,
        "Origins": {"Quantity": 1, "Items": [{"Id": "web-s3", "DomainName": f"{bucket}.s3.amazonaws.com",
                                              "OriginPath": "", "S3OriginConfig": {"OriginAccessIdentity": ""}}]},
        "DefaultCacheBehavior": {"TargetOriginId": "web-s3", "ViewerProtocolPolicy": "redirect-to-https",
                                 "TrustedSigners": {"Enabled": False, "Quantity": 0},
                                 "ForwardedValues": {"QueryString": False, "Cookies": {"Forward": "none"}},
                                 "MinTTL": 0}})
    return str(made["Distribution"]["Id"])


@dataclass
class Site:
    root: Path
    repo: Path
    bucket: str
    endpoint: str
    distribution: str
    s3: Any
    cf: Any

    def config(self, *, bucket: str | None = None, distribution: str | None = None, extra: str = "",
               service: str = "", deploy: str = "") -> None:
        dist = self.distribution if distribution is None else distribution
        bucket = self.bucket if bucket is None else bucket
        (self.root / "shipyard.yaml").write_text(f"""\
project: gli
repos:
  web: {{path: web}}
environments:
  prod: {{branch: main}}
services:
  web:
    repo: web
    kind: static
    publish_dir: dist
    health: {{interval: 0.1s, timeout: 2s, healthy_threshold: 1, unhealthy_threshold: 1, start_period: 0s,
             deadline: 20s}}
    {service}
    deploy:
      target: {{type: static, bucket: "{bucket}", distribution_id: "{dist}", region: {REGION},
               endpoint_url: "{self.endpoint}", keep: 2{extra}}}
      {deploy}
""")

    def commit(self, files: dict[str, bytes], message: str) -> str:
        dist = self.repo / "dist"
        if dist.exists():
            git(self.repo, "rm", "-rq", "dist")
        for key, body in files.items():
            path = dist / key
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(body)
        git(self.repo, "add", "-A")
        git(self.repo, "commit", "-qm", message)
        return git(self.repo, "rev-parse", "HEAD")

    def environment(self) -> Environment:
        """The engine's view, as the CLI builds it (config, store, target); no agent: a static target has
        no instances (the client exists because the router object wants one, and is never used)."""
        project = Project.load(self.root / "shipyard.yaml")
        return project.environment("web", "prod", AgentClient(project.agent_dir))

    def cli(self, *args: str) -> CliResult:
        return run_cli(self.root, *args, env=aws_env(), timeout=120)

    def origin_path(self) -> str:
        cfg = self.cf.get_distribution_config(Id=self.distribution)["DistributionConfig"]
        return str(cfg["Origins"]["Items"][0]["OriginPath"])

    def invalidations(self) -> int:
        got = self.cf.list_invalidations(DistributionId=self.distribution)["InvalidationList"]
        return int(got.get("Quantity", 0))

    def objects(self, prefix: str = "") -> dict[str, dict[str, Any]]:
        """Every object under `prefix` fetched back: key (relative) -> body and headers."""
        out = {}
        for page in self.s3.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=prefix):
            for obj in page.get("Contents", []):
                got = self.s3.get_object(Bucket=self.bucket, Key=obj["Key"])
                out[obj["Key"][len(prefix):]] = {"body": got["Body"].read(), "type": got["ContentType"],
                                                 "cache": got.get("CacheControl")}
        return out

    def prefixes(self) -> set[str]:
        got = self.s3.list_objects_v2(Bucket=self.bucket, Prefix="releases/", Delimiter="/")
        return {p["Prefix"] for p in got.get("CommonPrefixes", [])}

    def last_record(self) -> dict[str, Any]:
        """The newest deployment's activation record (deployments.context), as the engine stored it."""
        import sqlite3

        db = sqlite3.connect(self.root / ".shipyard" / "state.db")
        try:
            row = db.execute("SELECT context FROM deployments ORDER BY created_at DESC, id DESC LIMIT 1").fetchone()
        finally:
            db.close()
        return dict(json.loads(row[0])["activated"])


def make_site(root: Path, endpoint: str) -> Site:
    keys = {"aws_access_key_id": "testing", "aws_secret_access_key": "testing"}
    s3 = boto3.client("s3", region_name=REGION, endpoint_url=endpoint, **keys)
    cf = boto3.client("cloudfront", region_name=REGION, endpoint_url=endpoint, **keys)
    bucket = f"gli-web-{uuid.uuid4().hex[:12]}"     # moto's state is shared by the module's tests
    s3.create_bucket(Bucket=bucket)
    repo = root / "web"
    repo.mkdir(parents=True)
    git(repo, "init", "-q", "-b", "main")
    site = Site(root, repo, bucket, endpoint, make_distribution(cf, bucket), s3, cf)
    site.config()
    return site
