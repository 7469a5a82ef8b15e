"""boto3 clients, created once per process and shared by threads (clients are thread-safe).

`AWS_ENDPOINT_URL` (set by local mode) points every client at the emulator; with it set, S3 uses
path-style addressing so pre-signed URLs work against an IP endpoint. Against AWS, S3 clients use
virtual-hosted addressing on the *regional* endpoint, and pre-signed URLs are signed by a client of
the bucket's own region (`RegionalPresigner`): see docs/deploy.md, "Buckets in other regions".
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Mapping
from functools import cache, lru_cache
from typing import Any, Protocol

import boto3
from botocore.config import Config
from botocore.exceptions import ClientError

from talkstack.settings import get_local_settings

log = logging.getLogger(__name__)

TRACED_MODULES = ("botocore",)
"""What the handlers' X-Ray Tracer patches: AWS calls only. Patching everything it can would also
patch httpx, putting an `X-Amzn-Trace-Id` header on every webhook POST to a customer's endpoint
and recording each webhook URL (which may carry a token) in the traces."""

RETRIES = {"mode": "standard", "max_attempts": 5}

REGIONAL_S3 = {"addressing_style": "virtual", "us_east_1_regional_endpoint": "regional"}
"""botocore pre-signs for the *global* endpoint (`<bucket>.s3.amazonaws.com`) unless the addressing
style is `virtual` (or the client is in us-east-1 with `regional`): botocore/signers.py
`_should_use_global_endpoint`. A new bucket outside us-east-1 answers the global host with a 307
redirect the worker cannot follow with a signed URL, and opt-in regions (ap-east-1, …) are not
served there at all. `regional` also keeps us-east-1 on `s3.us-east-1.amazonaws.com`."""
LOCAL_S3 = {"addressing_style": "path"}
"""An emulator on an IP endpoint (local mode, tests) has no per-bucket host names."""


def s3_config(region: str | None, endpoint_url: str | None) -> Config:
    """How every S3 client is configured: SigV4, regional virtual-hosted URLs (path style for a
    local endpoint), and `region` as the signing region of what it pre-signs."""
    return Config(
        region_name=region,
        retries=RETRIES,  # type: ignore[arg-type]
        signature_version="s3v4",
        s3=LOCAL_S3 if endpoint_url else REGIONAL_S3,  # type: ignore[arg-type]
        max_pool_connections=32,
    )


@lru_cache(maxsize=1)
def _session() -> boto3.session.Session:
    return boto3.session.Session()


@cache
def client(service: str, region: str | None = None) -> Any:
    """The process's client of `service`, in `region` (default: the session's, AWS_REGION in a Lambda)."""
    if service == "s3":
        config = s3_config(region, get_local_settings().aws_endpoint_url)
    else:
        config = Config(region_name=region, retries=RETRIES, max_pool_connections=32)  # type: ignore[arg-type]
    return _session().client(service, config=config)  # type: ignore[call-overload]


class UrlSigner(Protocol):
    """What hands out pre-signed S3 URLs: a `RegionalPresigner` (or a plain client, in tests)."""

    def generate_presigned_url(
        self, ClientMethod: str, Params: Mapping[str, Any], ExpiresIn: int = 3600
    ) -> str: ...


LEGACY_LOCATIONS = {"": "us-east-1", "EU": "eu-west-1"}
"""GetBucketLocation's old names: no constraint is us-east-1, `EU` is eu-west-1."""


def bucket_region(s3: Any, bucket: str) -> str | None:
    """The bucket's region as S3 reports it, or None when it will not say.

    HeadBucket's `x-amz-bucket-region` first: S3 sends it "regardless of the permissions on the
    bucket" (HeadBucket API reference), with a 403 too, so it needs no `s3:ListBucket` (the
    dispatch role has none). Then GetBucketLocation."""
    try:
        region = s3.head_bucket(Bucket=bucket).get("BucketRegion")
    except ClientError as exc:
        headers = exc.response.get("ResponseMetadata", {}).get("HTTPHeaders", {})
        region = headers.get("x-amz-bucket-region")
    if region:
        return str(region)
    try:
        location = s3.get_bucket_location(Bucket=bucket).get("LocationConstraint") or ""
    except ClientError as exc:
        log.warning("cannot tell the region of bucket %s: %s", bucket, exc)
        return None
    return LEGACY_LOCATIONS.get(location, location)


class RegionalPresigner:
    """Pre-signs each request with a client of its bucket's own region.

    A pre-signed URL carries its signing region in `X-Amz-Credential`, and S3 refuses a URL signed
    for another region than the bucket's. botocore always signs with the *client's* region when it
    pre-signs (client.py `_resolve_endpoint_ruleset(ignore_signing_region=True)`, called from
    signers.py `generate_presigned_url`), so one client cannot pre-sign for buckets of several
    regions: this keeps one client per region. A bucket's region is looked up once and cached;
    `regions` (TALKSTACK_BUCKET_REGIONS) names it outright where a lookup is denied or wasted.
    """

    def __init__(
        self, lookup: Any, regional: Callable[[str], Any], regions: Mapping[str, str] | None = None
    ) -> None:
        self._lookup, self._regional = lookup, regional
        self._regions: dict[str, str] = dict(regions or {})
        self._clients: dict[str, Any] = {}
        self._lock = threading.Lock()

    def region(self, bucket: str) -> str:
        with self._lock:
            known = self._regions.get(bucket)
        if known is not None:
            return known
        found = bucket_region(self._lookup, bucket)
        if found is None:
            # Nothing better to go on; a wrong guess fails the worker's transfer with a 403/400.
            # Not cached: the lookup may have failed for a passing reason (a 5xx, SlowDown), and a
            # cached guess would sign this bucket wrongly until the Lambda's next cold start.
            guess = str(self._lookup.meta.region_name).replace("aws-global", "us-east-1")
            log.warning(
                "signing URLs of bucket %s for %s; set TALKSTACK_BUCKET_REGIONS if it lives elsewhere",
                bucket,
                guess,
            )
            return guess
        with self._lock:
            return self._regions.setdefault(bucket, found)

    def client_for(self, bucket: str) -> Any:
        region = self.region(bucket)
        with self._lock:
            if region not in self._clients:
                self._clients[region] = self._regional(region)
            return self._clients[region]

    def generate_presigned_url(
        self, ClientMethod: str, Params: Mapping[str, Any], ExpiresIn: int = 3600
    ) -> str:
        """botocore's `generate_presigned_url`, by the client of `Params["Bucket"]`'s region."""
        s3 = self.client_for(Params["Bucket"])
        return str(s3.generate_presigned_url(ClientMethod, Params=dict(Params), ExpiresIn=ExpiresIn))


def presigner(regions: Mapping[str, str] | None = None) -> RegionalPresigner:
    """The process's pre-signer: the shared S3 client looks regions up, `client("s3", region)` signs."""
    return RegionalPresigner(client("s3"), lambda region: client("s3", region), regions)


def error_code(exc: BaseException) -> str | None:
    """The AWS error code of a botocore ClientError (None for anything else)."""
    response = getattr(exc, "response", None)
    if isinstance(response, dict):
        return response.get("Error", {}).get("Code")
    return None


def reset_clients() -> None:
    """Forget cached clients (after the endpoint changes, e.g. between local stacks in tests)."""
    client.cache_clear()
    _session.cache_clear()
    get_local_settings.cache_clear()  # the endpoint is part of those settings
    secrets_provider.cache_clear()


@cache
def secrets_provider(secrets_client: Any = None) -> Any:
    """One powertools provider per client: its cache lives in the provider, so a new provider per
    call would read Secrets Manager on every invocation. No client: one from `client()`."""
    from aws_lambda_powertools.utilities.parameters import SecretsProvider

    return SecretsProvider(boto3_client=secrets_client or client("secretsmanager"))
