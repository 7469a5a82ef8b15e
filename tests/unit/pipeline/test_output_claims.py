"""outputs.claim and the managed-copy path of outputs.publish on moto's in-process S3: the condition
each write carries is read from what is at the key, and an object over CopyObject's limit (which
takes no condition) is still refused when the key holds another job's object."""

from __future__ import annotations

from typing import Any

import boto3
import pytest

from talkstack.contract.record import JobRecord
from talkstack.errors import TalkstackError
from talkstack.pipeline import outputs
from talkstack.pipeline.outputs import JOB_ID_METADATA, claim, publish, write_result_json
from tests.support.fakes import REGION
from tests.support.steps import OUTPUT, WORK, avatar_request


@pytest.fixture
def moto_s3(ddb: Any) -> Any:
    client = boto3.client("s3", region_name=REGION)
    for bucket in (OUTPUT, WORK):
        client.create_bucket(Bucket=bucket)
    return client


def test_the_claim_is_if_none_match_when_free_and_if_match_when_the_jobs_own(moto_s3):
    assert claim(moto_s3, OUTPUT, "a/video.mp4", "job-a") == {"IfNoneMatch": "*"}

    put = moto_s3.put_object(Bucket=OUTPUT, Key="a/video.mp4", Body=b"v", Metadata={JOB_ID_METADATA: "job-a"})

    assert claim(moto_s3, OUTPUT, "a/video.mp4", "job-a") == {"IfMatch": put["ETag"]}


@pytest.mark.parametrize("metadata", [{JOB_ID_METADATA: "job-b"}, {}], ids=["another job's", "untagged"])
def test_an_object_that_is_not_the_jobs_cannot_be_claimed(moto_s3, metadata):
    moto_s3.put_object(Bucket=OUTPUT, Key="a/video.mp4", Body=b"theirs", Metadata=metadata)

    with pytest.raises(TalkstackError) as caught:
        claim(moto_s3, OUTPUT, "a/video.mp4", "job-a")

    assert caught.value.code == "OUTPUT_EXISTS" and "a/video.mp4" in caught.value.message


def test_a_copy_too_large_for_a_conditional_write_still_checks_the_owner(moto_s3, monkeypatch):
    # Given a target held by another job, and an output over the single-copy limit (lowered here:
    # the managed multipart copy takes the same path for 5 bytes as for 5 GB)
    monkeypatch.setattr(outputs, "MAX_SINGLE_COPY_BYTES", 4)
    moto_s3.put_object(Bucket=WORK, Key="work/v.mp4", Body=b"video")
    moto_s3.put_object(Bucket=OUTPUT, Key="a/video.mp4", Body=b"theirs", Metadata={JOB_ID_METADATA: "job-b"})

    # When this job publishes there
    with pytest.raises(TalkstackError) as caught:
        publish(moto_s3, WORK, "work/v.mp4", OUTPUT, "a/video.mp4", "video/mp4", "job-a", 5)

    # Then it is refused and their object stays
    assert caught.value.code == "OUTPUT_EXISTS"
    assert moto_s3.get_object(Bucket=OUTPUT, Key="a/video.mp4")["Body"].read() == b"theirs"


def test_a_large_copy_is_published_tagged_with_the_job(moto_s3, monkeypatch):
    monkeypatch.setattr(outputs, "MAX_SINGLE_COPY_BYTES", 4)
    moto_s3.put_object(Bucket=WORK, Key="work/v.mp4", Body=b"video", Metadata={"other": "x"})

    publish(moto_s3, WORK, "work/v.mp4", OUTPUT, "a/video.mp4", "video/mp4", "job-a", 5)

    head = moto_s3.head_object(Bucket=OUTPUT, Key="a/video.mp4")
    assert head["Metadata"] == {JOB_ID_METADATA: "job-a"} and head["ContentType"] == "video/mp4"


class KeyKeepsChanging:
    """moto's S3, except that right after every HEAD another run writes the key again (its own
    object, tagged with `owner`): each write's condition is stale by the time it lands."""

    def __init__(self, s3: Any, owner: str) -> None:
        self.s3, self.owner, self.writes = s3, owner, 0

    def head_object(self, **params: Any) -> Any:
        try:
            return self.s3.head_object(**params)
        finally:
            self.writes += 1  # new bytes each time: a new ETag
            body = f"write {self.writes} by {self.owner}".encode()
            self.s3.put_object(**params, Body=body, Metadata={JOB_ID_METADATA: self.owner})

    def __getattr__(self, name: str) -> Any:
        return getattr(self.s3, name)


def test_a_write_whose_condition_fails_twice_is_output_exists(moto_s3):
    # Given a key that changes between every check and write (a run of the same job keeps rewriting it)
    record = JobRecord.new("job-a", avatar_request())
    racing = KeyKeepsChanging(moto_s3, "job-a")

    # When result.json is written: the first write fails its condition, the re-check finds the
    # job's own object, and the second write fails its condition too
    with pytest.raises(TalkstackError) as caught:
        write_result_json(racing, record, OUTPUT)

    # Then it gives up with OUTPUT_EXISTS (not S3's bare 412), and what is there stays
    assert caught.value.code == "OUTPUT_EXISTS"
    key = record.request.sibling_key("job-a", "result")
    assert moto_s3.get_object(Bucket=OUTPUT, Key=key)["Body"].read() == b"write 2 by job-a"
