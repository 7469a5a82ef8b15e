"""aioboto3 S3 clients for the concurrent batches of talkstack/pipeline/aio_s3.py.

Configured like the process's boto3 clients (aws.s3_config: SigV4, standard retries, path-style
addressing when AWS_ENDPOINT_URL points them at the local emulator, the regional virtual-hosted
endpoint otherwise); credentials and region come from the environment, as boto3's do.

aiobotocore supports one narrow botocore range (aioboto3 15.5.0 -> aiobotocore 2.25.1 -> botocore
>=1.40.46,<1.40.62), so pyproject.toml pins boto3/botocore to match, and a Lambda importing this
module carries its own botocore in its layer rather than the runtime's (finalize: the provenance
layer; the API: the modal layer; docs/deploy.md). Importing aioboto3 costs about a quarter of a
second, so only those two import this module.
"""

from __future__ import annotations

from contextlib import AbstractAsyncContextManager
from typing import Any

import aioboto3

from talkstack.pipeline.aio_s3 import AsyncS3
from talkstack.pipeline.aws import s3_config
from talkstack.settings import get_local_settings


def session_s3() -> AsyncS3:
    """Opens aioboto3 S3 clients configured like `aws.client("s3")`. A new session per client: a
    Lambda opens one per batch, and the endpoint (local mode) is read when it opens."""

    def open_client() -> AbstractAsyncContextManager[Any]:
        config = s3_config(None, get_local_settings().aws_endpoint_url)
        return aioboto3.Session().client("s3", config=config)

    return open_client
