"""The one edge between shipyard and AWS: boto3 clients and the mapping of AWS errors to one line.

Everything that talks to AWS (targets, routers, metric providers, secrets) makes its clients with
`client()` and wraps each call in `calling()`. Credentials and region come through boto3's normal chain
(env, profile, instance role); `endpoint_url` points a client at moto, LocalStack or a VPC endpoint. A failed
call becomes the given ShipyardError subclass with one line: which call, on which resource, what AWS said,
e.g. "aws s3 PutObject gli-web/releases/ab12/index.html: AccessDenied: Access Denied".
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from shipyard.errors import ShipyardError

RETRIES = {"max_attempts": 3, "mode": "standard"}


@dataclass(frozen=True)
class AwsSettings:
    """Where a client goes: None means boto3's own choice (AWS_REGION, the profile, the real endpoint)."""

    region: str | None = None
    endpoint_url: str | None = None


def client(service: str, settings: AwsSettings | None = None, *, error: type[ShipyardError] = ShipyardError,
           read_timeout: float = 30) -> Any:
    """A boto3 client for `service` with bounded retries and timeouts; a bad region or endpoint is one line."""
    import boto3
    from botocore.config import Config as BotoConfig

    settings = settings or AwsSettings()
    with calling(service, "client", settings.endpoint_url or "", error=error):
        return boto3.session.Session().client(
            service, region_name=settings.region, endpoint_url=settings.endpoint_url,
            config=BotoConfig(retries=RETRIES, connect_timeout=5, read_timeout=read_timeout))


def error_code(exc: BaseException) -> str:
    """The AWS error code of a botocore ClientError ("" for anything else)."""
    return str(getattr(exc, "response", {}).get("Error", {}).get("Code", ""))


@contextlib.contextmanager
def calling(service: str, call: str, resource: str = "", *,
            error: type[ShipyardError] = ShipyardError) -> Iterator[None]:
    """Map whatever botocore raises inside the block to `error` with one line naming call and resource."""
    from botocore.exceptions import (
        BotoCoreError,
        ClientError,
        EndpointConnectionError,
        NoCredentialsError,
        NoRegionError,
    )

    where = f"aws {service} {call}" + (f" {resource}" if resource else "")
    try:
        yield
    except ClientError as exc:
        err = exc.response.get("Error", {})
        message = " ".join(str(err.get("Message", "") or exc).split())
        raise error(f"{where}: {err.get('Code', 'error')}: {message}") from None
    except NoCredentialsError:
        raise error(f"{where}: no AWS credentials found (set AWS_PROFILE or AWS_ACCESS_KEY_ID/"
                    "AWS_SECRET_ACCESS_KEY, or run on a host with an instance role)") from None
    except NoRegionError:
        raise error(f"{where}: no AWS region (set region in shipyard.yaml or AWS_REGION)") from None
    except EndpointConnectionError as exc:
        raise error(f"{where}: cannot reach {getattr(exc, 'kwargs', {}).get('endpoint_url') or 'the AWS endpoint'}"
                    ) from None
    except BotoCoreError as exc:
        raise error(f"{where}: {exc}") from None
