"""Harnesses of the release-target contract (targets.base.ReleaseTarget): the kinds with no instances.

`async with harness(base) as case:` gives a ReleaseCase: the target, how to build a release directory of a
revision, how the target's own system says which revision is live (read from outside the target: moto's
distribution config and bucket; the command tool's own state file), and how to break the remote (the
bucket deleted; the tool gone) so the contract can check the refusal is one of the kind's errors.
"""

from __future__ import annotations

import contextlib
import os
import sys
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from shipyard.errors import ShipyardError, TargetError
from shipyard.targets.base import ReleaseSpec, ReleaseTarget


@dataclass
class ReleaseCase:
    target: ReleaseTarget
    base: Path
    live: Callable[[], str | None]               # the revision the remote serves, as it says itself
    breaks: Callable[[], Awaitable[None]]        # make the remote refuse everything from now on
    errors: tuple[type[ShipyardError], ...] = (TargetError,)
    progress: list[str] | None = None

    def spec(self, sha: str) -> ReleaseSpec:
        """A built release of `sha` (a tiny site) under base/releases/<sha>."""
        release = self.base / "releases" / sha
        (release / "assets").mkdir(parents=True, exist_ok=True)
        (release / "index.html").write_text(f"<p>{sha}</p>")
        (release / "assets" / f"app.{sha[:8]}.js").write_text(f"console.log('{sha}')")
        (release / "VERSION").write_text(sha)
        seen = self.progress if self.progress is not None else []
        return ReleaseSpec("web", "contract", sha, f"deploy-contract-{sha[:8]}", release,
                           {"PATH": os.environ.get("PATH", "/usr/bin:/bin")},
                           lambda message, data: seen.append(message))


ReleaseHarness = Callable[[Path], contextlib.AbstractAsyncContextManager[ReleaseCase]]


@contextlib.asynccontextmanager
async def static_release(base: Path) -> AsyncIterator[ReleaseCase]:
    import boto3
    from moto.server import ThreadedMotoServer

    from shipyard.config.release_targets import StaticTarget as StaticConfig
    from shipyard.targets.static import StaticTarget

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    keys = {"aws_access_key_id": "testing", "aws_secret_access_key": "testing", "region_name": "us-east-1"}
    saved = {k: os.environ.get(k) for k in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")}
    os.environ.update(AWS_ACCESS_KEY_ID="testing", AWS_SECRET_ACCESS_KEY="testing")
    try:
        s3 = boto3.client("s3", endpoint_url=endpoint, **keys)
        cf = boto3.client("cloudfront", endpoint_url=endpoint, **keys)
        bucket = f"contract-{uuid.uuid4().hex[:10]}"
        s3.create_bucket(Bucket=bucket)
        dist = cf.create_distribution(DistributionConfig={
            "CallerReference": bucket, "Comment": "", "Enabled": True,
            "Origins": {"Quantity": 1, "Items": [{"Id": "s3", "DomainName": f"{bucket}.s3.amazonaws.com",
                                                  "OriginPath": "", "S3OriginConfig": {"OriginAccessIdentity": ""}}]},
            "DefaultCacheBehavior": {"TargetOriginId": "s3", "ViewerProtocolPolicy": "allow-all",
                                     "TrustedSigners": {"Enabled": False, "Quantity": 0},
                                     "ForwardedValues": {"QueryString": False, "Cookies": {"Forward": "none"}},
                                     "MinTTL": 0}})["Distribution"]["Id"]
        config = StaticConfig(type="static", bucket=bucket, distribution_id=dist, region="us-east-1",
                              endpoint_url=endpoint, keep=2)

        def live() -> str | None:
            path = cf.get_distribution_config(Id=dist)["DistributionConfig"]["Origins"]["Items"][0]["OriginPath"]
            if not path:
                return None
            body = s3.get_object(Bucket=bucket, Key=path.lstrip("/") + "/VERSION")["Body"].read()
            return str(body.decode())

        async def breaks() -> None:
            for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket):
                for obj in page.get("Contents", []):
                    s3.delete_object(Bucket=bucket, Key=obj["Key"])
            s3.delete_bucket(Bucket=bucket)

        yield ReleaseCase(StaticTarget(config, "web", "contract", None), base, live, breaks)
    finally:
        server.stop()
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


TOOL = """\
#!{python}
import pathlib, sys
state = pathlib.Path(sys.argv[1])
what, sha = sys.argv[2], sys.argv[3]
if what == "status":
    sys.exit(0 if state.exists() and state.read_text() == pathlib.Path("VERSION").read_text() else 1)
print(f"{what} {sha}")
state.write_text(pathlib.Path("VERSION").read_text())
"""


@contextlib.asynccontextmanager
async def command_release(base: Path) -> AsyncIterator[ReleaseCase]:
    from shipyard.config.release_targets import CommandTarget as CommandConfig
    from shipyard.targets.command import CommandTarget

    tool, state = base / "tool.py", base / "live"
    tool.write_text(TOOL.replace("{python}", sys.executable))
    tool.chmod(0o755)
    run = f"{tool} {state}"
    config = CommandConfig(type="command", deploy=f"{run} deploy {{sha}}", rollback=f"{run} rollback {{sha}}",
                           status=f"{run} status {{sha}}", timeout=30)

    def live() -> str | None:
        return state.read_text() if state.exists() else None

    async def breaks() -> None:
        tool.unlink()

    yield ReleaseCase(CommandTarget(config, "web", "contract", base), base, live, breaks)


RELEASES: dict[str, ReleaseHarness] = {"static": static_release, "command": command_release}


def record_ok(record: dict[str, Any], sha: str) -> None:
    import json

    assert record["revision"] == sha, record
    json.dumps(record)          # stored in the deployment's context: JSON all the way down
