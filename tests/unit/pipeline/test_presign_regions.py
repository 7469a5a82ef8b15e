"""Pre-signed URLs are signed for each bucket's own region, on that region's endpoint (finding 12).

What botocore really produces is asserted here, offline (pre-signing needs no network): the host of
the URL and the region in its `X-Amz-Credential`. Region lookups are answered by botocore's Stubber
at the client boundary, or by moto's S3 for whole-path checks.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any
from urllib.parse import parse_qs, urlsplit

import boto3
import pytest
from botocore.stub import Stubber
from moto import mock_aws

from talkstack.local.resources import LocalResources
from talkstack.pipeline import aws
from talkstack.pipeline.aws import RegionalPresigner, bucket_region, s3_config
from talkstack.pipeline.config import PipelineConfig, get_config
from talkstack.pipeline.dispatch import Presigner
from talkstack.pipeline.services import services
from tests.support.pipeline_env import local_config_fields

OPT_IN = "ap-east-1"  # Hong Kong: an opt-in region, not served by the global endpoint at all


def signed(url: str) -> tuple[str, str, str]:
    """(host, signing region from X-Amz-Credential, path) of a pre-signed URL."""
    parts = urlsplit(url)
    credential = parse_qs(parts.query)["X-Amz-Credential"][0]  # AKID/date/region/s3/aws4_request
    return parts.netloc, credential.split("/")[2], parts.path


@pytest.fixture(autouse=True)
def no_emulator(monkeypatch: pytest.MonkeyPatch) -> None:
    """botocore reads AWS_ENDPOINT_URL for any client built without an endpoint: a local stack
    started earlier in the process (it sets it) would point every client here at moto."""
    for name in ("AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def aws_in(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """The process as a Lambda in a region sees it: AWS_REGION set, no emulator endpoint."""

    def enter(region: str) -> None:
        for name in ("AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3", "AWS_PROFILE"):
            monkeypatch.delenv(name, raising=False)
        monkeypatch.setenv("AWS_REGION", region)
        monkeypatch.setenv("AWS_DEFAULT_REGION", region)
        monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIDEXAMPLE")
        monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "secret")
        aws.reset_clients()

    yield enter
    aws.reset_clients()  # the clients of the next test see its own environment


def offline_client(region: str, endpoint_url: str | None = None) -> Any:
    session = boto3.session.Session(aws_access_key_id="AKIDEXAMPLE", aws_secret_access_key="secret")
    return session.client("s3", endpoint_url=endpoint_url, config=s3_config(region, endpoint_url))


# --- the process's own client ---------------------------------------------------------------------


@pytest.mark.parametrize("region", ["us-east-1", "eu-west-1", OPT_IN])
def test_the_process_client_signs_for_its_regional_endpoint(aws_in, region):
    # Before the fix botocore gave `media.s3.amazonaws.com` for all three (signers.py
    # `_should_use_global_endpoint`): a 307 for a new bucket outside us-east-1, a failure in ap-east-1.
    aws_in(region)
    url = aws.client("s3").generate_presigned_url(
        "get_object", Params={"Bucket": "media", "Key": "a b.wav"}, ExpiresIn=60
    )
    assert signed(url) == (f"media.s3.{region}.amazonaws.com", region, "/a%20b.wav")


def test_a_local_endpoint_keeps_path_style(aws_in, monkeypatch):
    aws_in("us-east-1")
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:4599")
    aws.reset_clients()
    url = aws.client("s3").generate_presigned_url(
        "put_object", Params={"Bucket": "media", "Key": "k.mp4"}, ExpiresIn=60
    )
    assert signed(url) == ("127.0.0.1:4599", "us-east-1", "/media/k.mp4")


def test_a_dotted_bucket_name_stays_on_the_regional_endpoint_in_path_style(aws_in):
    # A dot breaks the *.s3.<region>.amazonaws.com certificate: botocore falls back to path style,
    # still on the regional host.
    aws_in("eu-west-1")
    url = aws.client("s3").generate_presigned_url(
        "get_object", Params={"Bucket": "media.example.com", "Key": "k"}, ExpiresIn=60
    )
    assert signed(url) == ("s3.eu-west-1.amazonaws.com", "eu-west-1", "/media.example.com/k")


# --- one client per bucket region -----------------------------------------------------------------


def stubbed_lookup(region: str = "eu-west-1") -> tuple[Any, Stubber]:
    lookup = offline_client(region)
    return lookup, Stubber(lookup)


def test_each_bucket_is_signed_for_its_own_region_by_the_process_presigner(aws_in):
    aws_in("eu-west-1")
    signer = aws.presigner()
    with Stubber(aws.client("s3")) as stub:
        stub.add_response("head_bucket", {"BucketRegion": "us-east-1"}, {"Bucket": "media-us"})
        stub.add_response("head_bucket", {"BucketRegion": "eu-west-1"}, {"Bucket": "media-eu"})
        stub.add_response("head_bucket", {"BucketRegion": OPT_IN}, {"Bucket": "media-hk"})
        urls = {
            bucket: signer.generate_presigned_url(
                "get_object", Params={"Bucket": bucket, "Key": "in/voice.wav"}, ExpiresIn=600
            )
            for bucket in ("media-us", "media-eu", "media-hk", "media-us", "media-hk")
        }
        stub.assert_no_pending_responses()  # and no second lookup: a stubber with none left raises
    assert signed(urls["media-us"]) == ("media-us.s3.us-east-1.amazonaws.com", "us-east-1", "/in/voice.wav")
    assert signed(urls["media-eu"]) == ("media-eu.s3.eu-west-1.amazonaws.com", "eu-west-1", "/in/voice.wav")
    assert signed(urls["media-hk"]) == (f"media-hk.s3.{OPT_IN}.amazonaws.com", OPT_IN, "/in/voice.wav")


def test_a_forbidden_head_bucket_still_names_the_region():
    # S3 answers HeadBucket with x-amz-bucket-region even when it refuses it (403): the dispatch
    # role has no s3:ListBucket on the buckets it signs for.
    lookup, stub = stubbed_lookup()
    stub.add_client_error(
        "head_bucket",
        service_error_code="403",
        http_status_code=403,
        response_meta={"HTTPHeaders": {"x-amz-bucket-region": OPT_IN}},
    )
    with stub:
        assert bucket_region(lookup, "media-hk") == OPT_IN


@pytest.mark.parametrize(("location", "region"), [(None, "us-east-1"), ("EU", "eu-west-1"), (OPT_IN, OPT_IN)])
def test_get_bucket_location_is_the_fallback(location, region):
    lookup, stub = stubbed_lookup()
    stub.add_client_error("head_bucket", service_error_code="403", http_status_code=403)
    stub.add_response("get_bucket_location", {"LocationConstraint": location} if location else {})
    with stub:
        assert bucket_region(lookup, "media") == region


def test_a_configured_region_needs_no_lookup_and_a_denied_lookup_falls_back_to_our_region():
    lookup, stub = stubbed_lookup("eu-west-1")
    signer = RegionalPresigner(lookup, offline_client, {"media-hk": OPT_IN})
    stub.add_client_error("head_bucket", service_error_code="403", http_status_code=403)
    stub.add_client_error("get_bucket_location", service_error_code="AccessDenied", http_status_code=403)
    # the next lookup of the same bucket gets an answer (the failure was passing: a 5xx, SlowDown)
    stub.add_response("head_bucket", {"BucketRegion": "ap-southeast-2"}, {"Bucket": "secretive"})
    with stub:  # no call is stubbed for media-hk: a lookup of it would raise
        hk = signer.generate_presigned_url("get_object", Params={"Bucket": "media-hk", "Key": "k"})
        guessed = signer.generate_presigned_url("get_object", Params={"Bucket": "secretive", "Key": "k"})
        answered = signer.generate_presigned_url("get_object", Params={"Bucket": "secretive", "Key": "k"})
        cached = signer.generate_presigned_url("get_object", Params={"Bucket": "secretive", "Key": "k"})
    assert signed(hk)[:2] == (f"media-hk.s3.{OPT_IN}.amazonaws.com", OPT_IN)
    # a guess (our own region) is used once and never cached; a region S3 reported is
    assert signed(guessed)[:2] == ("secretive.s3.eu-west-1.amazonaws.com", "eu-west-1")
    assert (
        signed(answered)[:2]
        == signed(cached)[:2]
        == ("secretive.s3.ap-southeast-2.amazonaws.com", "ap-southeast-2")
    )


# --- the product's callers ------------------------------------------------------------------------


@mock_aws
def test_dispatch_urls_for_buckets_of_three_regions(aws_in):
    """dispatch's Presigner through the process presigner, regions answered by moto's S3."""
    aws_in("us-east-1")
    for bucket, region in [("work-us", "us-east-1"), ("media-eu", "eu-west-1"), ("media-hk", OPT_IN)]:
        where = {} if region == "us-east-1" else {"LocationConstraint": region}
        boto3.client("s3", region_name=region).create_bucket(Bucket=bucket, CreateBucketConfiguration=where)
    sign = Presigner(aws.presigner(), expires_in=900)
    put = sign.put("work-us", "work/j/a/video.mp4")
    eu = sign.get("media-eu", "in/portrait.png", "image.png")
    hk = sign.get("media-hk", "in/voice.wav", "voice.wav")
    assert signed(put.url)[:2] == ("work-us.s3.us-east-1.amazonaws.com", "us-east-1")
    assert signed(eu.url)[:2] == ("media-eu.s3.eu-west-1.amazonaws.com", "eu-west-1")
    assert signed(hk.url)[:2] == (f"media-hk.s3.{OPT_IN}.amazonaws.com", OPT_IN)
    assert "content-type" in parse_qs(urlsplit(put.url).query)["X-Amz-SignedHeaders"][0]


def forget_services() -> None:
    """The handlers' cached configuration and services are rebuilt from the environment."""
    get_config.cache_clear()
    services.cache_clear()


def test_the_handlers_presigner_uses_the_configured_regions(aws_in, no_pipeline_environment, monkeypatch):
    """services().presign, as the dispatch and API Lambdas get it, from TALKSTACK_BUCKET_REGIONS."""
    aws_in("eu-west-1")
    env = LocalResources().pipeline_env(bucket_regions="media-hk=ap-east-1, media-us=us-east-1")
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    forget_services()
    try:
        with Stubber(aws.client("s3")):  # no lookup stubbed: one would raise
            signer = services().presign
            hk = signer.generate_presigned_url("get_object", Params={"Bucket": "media-hk", "Key": "k"})
            us = signer.generate_presigned_url("get_object", Params={"Bucket": "media-us", "Key": "k"})
    finally:
        forget_services()
    assert signed(hk)[:2] == (f"media-hk.s3.{OPT_IN}.amazonaws.com", OPT_IN)
    assert signed(us)[:2] == ("media-us.s3.us-east-1.amazonaws.com", "us-east-1")
    with pytest.raises(ValueError, match="bucket_regions"):
        PipelineConfig(**local_config_fields(), bucket_regions="media=Europe")  # type: ignore[arg-type]
