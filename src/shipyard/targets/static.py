"""A static site on S3 behind CloudFront: every release under its own key prefix, made live by pointing the
distribution's origin path at it, so a rollback is one more switch and never an upload.

Activation: upload what the prefix does not hold yet (targets.site decides; bounded parallel PutObjects;
an object the live release holds unchanged is copied inside S3 instead, so a new revision uploads only the
files that changed),
switch OriginPath (GetDistributionConfig, then UpdateDistribution with its ETag as IfMatch, so a change
someone made meanwhile is refused instead of overwritten), invalidate `/*` and wait for it (a deadline).
All of it is all-at-once: a weighted canary on CloudFront (continuous deployment policies) is out of scope.
Every boto3 call goes through shipyard.aws, so a refusal is one line naming the call and the resource.
"""

from __future__ import annotations

import asyncio
import base64
import functools
import re
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import httpx

from shipyard.aws import AwsSettings, calling, client, error_code
from shipyard.config.release_targets import StaticTarget as StaticConfig
from shipyard.errors import TargetError
from shipyard.targets.base import ReleaseSpec
from shipyard.targets.site import Rules, SiteFile, extra, scan, to_upload

T = TypeVar("T")
INVALIDATION_POLL = 1.0
PROGRESS_EVERY = 0.1        # a progress event every tenth of the uploads
SHA = re.compile(r"[0-9a-f]{40}")
MISSING = frozenset({"404", "NoSuchBucket", "NoSuchKey", "NoSuchDistribution", "NotFound"})


class StaticTarget:
    capabilities = frozenset({"release"})

    def __init__(self, config: StaticConfig, service: str, env: str, publish_dir: str | None) -> None:
        self.cfg, self.service, self.env, self.publish_dir = config, service, env, publish_dir
        aws = AwsSettings(region=config.region, endpoint_url=config.endpoint_url)
        self.s3 = client("s3", aws, error=TargetError)
        self.cloudfront = client("cloudfront", aws, error=TargetError)
        c = config.cache
        self.rules = Rules(tuple(c.immutable), tuple(c.no_cache), c.immutable_header, c.no_cache_header, c.default)

    async def _aws(self, service: str, call: str, resource: str, fn: Callable[[], T]) -> T:
        def run() -> T:
            with calling(service, call, resource, error=TargetError):
                return fn()
        return await asyncio.to_thread(run)

    async def _found(self, service: str, call: str, resource: str, fn: Callable[[], T]) -> T | None:
        """fn()'s answer, or None when AWS says the resource does not exist."""
        def run() -> T | None:
            with calling(service, call, resource, error=TargetError):
                try:
                    return fn()
                except Exception as exc:
                    if error_code(exc) in MISSING:
                        return None
                    raise
        return await asyncio.to_thread(run)

    # --- the protocol ------------------------------------------------------------------------------
    async def preflight(self) -> list[str]:
        problems = []
        bucket = self.cfg.bucket
        try:
            if await self._found("s3", "HeadBucket", bucket, lambda: self.s3.head_bucket(Bucket=bucket)) is None:
                problems.append(f"S3 bucket {bucket} does not exist")
        except TargetError as exc:
            problems.append(str(exc))
        try:
            config, _ = await self._config()
            self._origin(config)
        except TargetError as exc:
            problems.append(str(exc))
        return problems

    async def activate(self, spec: ReleaseSpec) -> dict[str, Any]:
        root = spec.release / (self.publish_dir or ".")
        if not root.is_dir():
            raise TargetError(f"{root} is not a directory: nothing to upload (does the build write publish_dir?)")
        files = await asyncio.to_thread(scan, root, self.rules)
        if not files:
            raise TargetError(f"{root} is empty: refusing to publish an empty site")
        prefix = self.cfg.prefix_of(spec.revision)
        existing = await self._listing(prefix)
        missing, stale = to_upload(files, existing), extra(files, existing)
        # What the live release already holds unchanged is copied inside S3, not uploaded again.
        config, _ = await self._config()
        live = str(self._origin(config).get("OriginPath") or "").strip("/")
        live_objects = await self._listing(live + "/") if missing and live and live + "/" != prefix else {}
        changed = to_upload(missing, live_objects)
        copies = [f for f in missing if f not in changed]
        spec.progress(f"uploading {len(changed)} of {len(files)} objects to s3://{self.cfg.bucket}/{prefix}"
                      + (f", copying {len(copies)} unchanged from /{live}" if copies else ""),
                      {"upload": len(changed), "copy": len(copies), "total": len(files), "prefix": prefix})
        await self._parallel(prefix, changed, spec, "uploaded", self._put)
        await self._parallel(prefix, copies, spec, "copied", lambda f, key: self._copy(f, key, live + "/" + f.key))
        if stale:
            await self._delete([prefix + k for k in stale])
        record = await self._switch(prefix, spec)
        return {"revision": spec.revision, "prefix": prefix, "uploaded": len(changed), "copied": len(copies),
                "unchanged": len(files) - len(missing), "deleted": len(stale), **record}

    async def rollback(self, to: dict[str, Any], spec: ReleaseSpec) -> dict[str, Any]:
        prefix = str(to.get("prefix") or self.cfg.prefix_of(str(to["revision"])))
        if not await self._listing(prefix, limit=1):
            raise TargetError(f"s3://{self.cfg.bucket}/{prefix} is empty (pruned?): deploy {spec.revision[:8]} "
                              "again to upload it")
        record = await self._switch(prefix, spec)
        return {"revision": spec.revision, "prefix": prefix, "uploaded": 0, **record}

    async def status(self) -> str | None:
        config, _ = await self._config()
        path = str(self._origin(config).get("OriginPath") or "")
        if not path:
            return f"distribution {self.cfg.distribution_id} serves the bucket root, not a release"
        index = path.lstrip("/") + "/index.html"
        if await self._found("s3", "HeadObject", f"{self.cfg.bucket}/{index}",
                             lambda: self.s3.head_object(Bucket=self.cfg.bucket, Key=index)) is None:
            return f"{index} is not in bucket {self.cfg.bucket}"
        if self.cfg.url:
            return await _get(self.cfg.url)
        return None

    async def prune(self, keep: int, in_use: set[str]) -> dict[str, Any]:
        base = self.cfg.prefix.split("{sha}")[0]
        listing = await self._listing(base, detail=True)
        newest: dict[str, float] = {}
        for key, (_, _, modified) in listing.items():
            release = key.split("/", 1)[0]
            # Only what a release of ours would be called: nothing else that shares the bucket is touched.
            if SHA.fullmatch(release) and (base + key).startswith(self.cfg.prefix_of(release)):
                newest[release] = max(newest.get(release, 0.0), modified)
        config, _ = await self._config()
        live = str(self._origin(config).get("OriginPath") or "").lstrip("/")
        protected = {self.cfg.prefix_of(sha).removeprefix(base).rstrip("/") for sha in in_use}
        protected.add(live.removeprefix(base).rstrip("/"))
        # `keep` counts every release left, the live and previous ones first; the rest by age.
        ordered = sorted(newest, key=lambda r: newest[r], reverse=True)
        others = [r for r in ordered if r not in protected]
        doomed = others[max(0, keep - len(set(ordered) & protected)):]
        if doomed:
            await self._delete([base + k for k in listing if k.split("/", 1)[0] in doomed and
                                (base + k).startswith(self.cfg.prefix_of(k.split("/", 1)[0]))])
        return {"pruned": doomed, "kept": [r for r in ordered if r not in doomed]}

    # --- S3 --------------------------------------------------------------------------------------
    async def _listing(self, prefix: str, *, limit: int | None = None, detail: bool = False) -> dict[str, Any]:
        """Keys under `prefix` (relative to it) -> (size, ETag) or, with detail, (size, ETag, mtime)."""
        def run() -> dict[str, Any]:
            found: dict[str, Any] = {}
            pages = self.s3.get_paginator("list_objects_v2").paginate(
                Bucket=self.cfg.bucket, Prefix=prefix, PaginationConfig={"MaxItems": limit} if limit else {})
            for page in pages:
                for obj in page.get("Contents", []):
                    etag = str(obj.get("ETag", "")).strip('"')
                    rel = obj["Key"][len(prefix):]
                    found[rel] = (obj["Size"], etag, obj["LastModified"].timestamp()) if detail \
                        else (obj["Size"], etag)
            return found
        return await self._aws("s3", "ListObjectsV2", f"{self.cfg.bucket}/{prefix}", run)

    async def _put(self, f: SiteFile, key: str) -> None:
        await self._aws("s3", "PutObject", f"{self.cfg.bucket}/{key}", lambda: self.s3.put_object(
            Bucket=self.cfg.bucket, Key=key, Body=f.path.read_bytes(), ContentType=f.content_type,
            CacheControl=f.cache_control, ContentMD5=_b64(f.md5)))

    async def _copy(self, f: SiteFile, key: str, source: str) -> None:
        await self._aws("s3", "CopyObject", f"{self.cfg.bucket}/{key}", lambda: self.s3.copy_object(
            Bucket=self.cfg.bucket, Key=key, CopySource={"Bucket": self.cfg.bucket, "Key": source},
            MetadataDirective="REPLACE", ContentType=f.content_type, CacheControl=f.cache_control))

    async def _parallel(self, prefix: str, files: list[SiteFile], spec: ReleaseSpec, verb: str,
                        put: Callable[[SiteFile, str], Awaitable[None]]) -> None:
        """`put` every file, at most `parallel` at once, with a progress event every tenth of them."""
        gate = asyncio.Semaphore(self.cfg.parallel)
        done = 0
        step = max(1, int(len(files) * PROGRESS_EVERY))

        async def one(f: SiteFile) -> None:
            nonlocal done
            async with gate:
                await put(f, prefix + f.key)
            done += 1
            if done % step == 0 or done == len(files):
                spec.progress(f"{verb} {done}/{len(files)}", {verb: done, "total": len(files)})
        tasks = [asyncio.create_task(one(f)) for f in files]
        try:
            await asyncio.gather(*tasks)
        finally:
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    async def _delete(self, keys: list[str]) -> None:
        for at in range(0, len(keys), 1000):
            batch = {"Objects": [{"Key": k} for k in keys[at:at + 1000]], "Quiet": True}
            await self._aws("s3", "DeleteObjects", self.cfg.bucket, functools.partial(
                self.s3.delete_objects, Bucket=self.cfg.bucket, Delete=batch))

    # --- CloudFront --------------------------------------------------------------------------------
    async def _config(self) -> tuple[dict[str, Any], str]:
        dist = self.cfg.distribution_id
        got = await self._found("cloudfront", "GetDistributionConfig", dist,
                                lambda: self.cloudfront.get_distribution_config(Id=dist))
        if got is None:
            raise TargetError(f"CloudFront distribution {dist} does not exist")
        return got["DistributionConfig"], got["ETag"]

    def _origin(self, config: dict[str, Any]) -> dict[str, Any]:
        origins = config.get("Origins", {}).get("Items", [])
        for origin in origins:
            if self.cfg.origin_id is not None:
                if origin.get("Id") == self.cfg.origin_id:
                    return dict(origin)
            elif str(origin.get("DomainName", "")).split(".")[0] == self.cfg.bucket or \
                    str(origin.get("DomainName", "")).startswith(self.cfg.bucket + ".s3"):
                return dict(origin)
        which = f"origin {self.cfg.origin_id}" if self.cfg.origin_id else f"an origin on bucket {self.cfg.bucket}"
        raise TargetError(f"CloudFront distribution {self.cfg.distribution_id} has no {which} "
                          f"(origins: {', '.join(str(o.get('Id')) for o in origins) or 'none'})")

    async def _switch(self, prefix: str, spec: ReleaseSpec) -> dict[str, Any]:
        """Point the origin at `prefix` (unless it is already), then invalidate and wait."""
        dist = self.cfg.distribution_id
        config, etag = await self._config()
        origin_path = "/" + prefix.rstrip("/")
        ours = self._origin(config).get("Id")
        before = None
        for origin in config["Origins"]["Items"]:
            if origin.get("Id") == ours:
                before = origin.get("OriginPath", "")
                origin["OriginPath"] = origin_path
        if before != origin_path:
            await self._aws("cloudfront", "UpdateDistribution", dist, lambda: self.cloudfront.update_distribution(
                Id=dist, IfMatch=etag, DistributionConfig=config))
            spec.progress(f"origin path of {dist}: {before or '/'} -> {origin_path}",
                          {"origin_path": origin_path, "was": before})
        invalidation = await self._invalidate(spec)
        return {"origin_path": origin_path, "was": before, "invalidation": invalidation}

    async def _invalidate(self, spec: ReleaseSpec) -> str:
        dist = self.cfg.distribution_id
        ref = f"{spec.deployment}-{spec.revision[:12]}-{time.time_ns()}"
        made = await self._aws("cloudfront", "CreateInvalidation", dist, lambda: self.cloudfront.create_invalidation(
            DistributionId=dist, InvalidationBatch={"Paths": {"Quantity": 1, "Items": ["/*"]},
                                                    "CallerReference": ref}))
        inv_id = str(made["Invalidation"]["Id"])
        spec.progress(f"invalidating /* on {dist} ({inv_id})", {"invalidation": inv_id})
        deadline = time.monotonic() + self.cfg.invalidation_timeout
        status = str(made["Invalidation"].get("Status", ""))
        while status.lower() != "completed":
            if time.monotonic() > deadline:
                raise TargetError(f"invalidation {inv_id} on {dist} still {status} after "
                                  f"{self.cfg.invalidation_timeout:g}s")
            await asyncio.sleep(INVALIDATION_POLL)
            got = await self._aws("cloudfront", "GetInvalidation", f"{dist}/{inv_id}",
                                  lambda: self.cloudfront.get_invalidation(DistributionId=dist, Id=inv_id))
            status = str(got["Invalidation"].get("Status", ""))
        return inv_id


def _b64(md5_hex: str) -> str:
    return base64.b64encode(bytes.fromhex(md5_hex)).decode()


async def _get(url: str) -> str | None:
    """The site's answer: None for 2xx/3xx, else one line (the health check of `url`)."""
    try:
        async with httpx.AsyncClient(timeout=5.0) as http:
            code = (await http.get(url)).status_code
    except httpx.HTTPError as exc:
        return f"GET {url}: {type(exc).__name__}: {exc}"
    return None if code < 400 else f"GET {url}: HTTP {code}"

