"""Publishing never overwrites an object that is not the job's: finalize checks every target first
(nothing is written when one is taken), each write is conditional on what the check read, and a
re-run of the same job may overwrite its own outputs. On moto's in-process S3 (which honours
PutObject's If-None-Match / If-Match), so the conditions are S3's, not ours."""

from __future__ import annotations

from typing import Any

import boto3
import pytest

from talkstack.contract.record import JobRecord
from talkstack.errors import ErrorCode, TalkstackError
from talkstack.pipeline.aio_s3 import threaded
from talkstack.pipeline.finalize import finalize_job
from talkstack.pipeline.outputs import (
    JOB_ID_METADATA,
    Copy,
    check_targets,
    publish,
    publish_all,
    write_result_json,
)
from tests.support.fakes import REGION, client_error
from tests.support.steps import OUTPUT, WORK, avatar_request, output_keys, worker_result


@pytest.fixture
def moto_s3(ddb: Any) -> Any:
    """S3 inside the same mock_aws as the jobs table (the ddb fixture's)."""
    client = boto3.client("s3", region_name=REGION)
    for bucket in (OUTPUT, WORK):
        client.create_bucket(Bucket=bucket)
    return client


def rendered(store: Any, s3: Any, job_id: str, **output: Any) -> JobRecord:
    """A job whose avatar step delivered a video and thumbnail to the work bucket."""
    request = avatar_request(output=output) if output else avatar_request()
    record = JobRecord.new(job_id, request)
    record.start_step("avatar", model="lite-avatar")
    record.finish_step("avatar")
    assert store.create(record)
    marker = worker_result(s3, job_id, f"avatar-1-{job_id}", roles=("video", "thumbnail"))
    store.put_step_result(job_id, "avatar", marker)
    return record


def snapshot(s3: Any, keys: dict[str, str]) -> dict[str, tuple[bytes, dict[str, str]]]:
    out = {}
    for role, key in keys.items():
        obj = s3.get_object(Bucket=OUTPUT, Key=key)
        out[role] = (obj["Body"].read(), obj["Metadata"])
    return out


@pytest.mark.parametrize("taken", ["video", "thumbnail", "result"])
def test_a_job_whose_outputs_would_land_on_another_jobs_publishes_nothing(config, store, moto_s3, taken):
    # Given job B completed with its outputs at prefix "shared"
    rendered(store, moto_s3, "job-b", prefix="shared")
    theirs = finalize_job("job-b", config, store, moto_s3)
    keys = output_keys(theirs)
    before = snapshot(moto_s3, keys)
    # and only one of B's objects is where job A would publish (the others moved away)
    for role, key in keys.items():
        if role != taken:
            moto_s3.delete_object(Bucket=OUTPUT, Key=key)
    rendered(store, moto_s3, "job-a", prefix="shared")

    # When job A is finalized
    with pytest.raises(TalkstackError) as caught:
        finalize_job("job-a", config, store, moto_s3)

    # Then it fails with OUTPUT_EXISTS naming the key, B's object is byte for byte B's, and A wrote
    # nothing at all (not even the targets that were free)
    error = caught.value
    assert error.code == ErrorCode.OUTPUT_EXISTS
    assert error.message == (
        f"output key {keys[taken]} already holds another job's output; choose another output.prefix "
        "or set output.unique_suffix"
    )
    assert snapshot(moto_s3, {taken: keys[taken]}) == {taken: before[taken]}
    listed = moto_s3.list_objects_v2(Bucket=OUTPUT).get("Contents", [])
    assert [o["Key"] for o in listed] == [keys[taken]]
    assert store.get("job-a").status != "completed"


def test_an_object_without_a_job_id_is_not_overwritten(config, store, moto_s3):
    record = rendered(store, moto_s3, "job-a", prefix="mine")
    video_key = output_keys(record)["video"]
    moto_s3.put_object(Bucket=OUTPUT, Key=video_key, Body=b"the user's own file")

    with pytest.raises(TalkstackError, match="OUTPUT_EXISTS"):
        finalize_job("job-a", config, store, moto_s3)

    assert moto_s3.get_object(Bucket=OUTPUT, Key=video_key)["Body"].read() == b"the user's own file"


def test_a_rerun_of_the_same_job_overwrites_its_own_outputs(config, store, moto_s3):
    record = rendered(store, moto_s3, "job-a")
    keys = output_keys(record)
    for key in keys.values():  # an earlier attempt of this job got as far as publishing
        moto_s3.put_object(Bucket=OUTPUT, Key=key, Body=b"old", Metadata={JOB_ID_METADATA: "job-a"})

    done = finalize_job("job-a", config, store, moto_s3)

    assert done.status == "completed"
    assert all(body != b"old" for body, _ in snapshot(moto_s3, keys).values())
    again = finalize_job("job-a", config, store, moto_s3)  # a completed job rewrites result.json only
    assert JobRecord.model_validate_json(snapshot(moto_s3, keys)["result"][0]) == again


class RacingS3:
    """moto's S3, except that right after the owner check (the HEAD) another job writes the key:
    only the write condition can stop the overwrite now."""

    def __init__(self, s3: Any, racer: str) -> None:
        self.s3, self.racer, self.raced = s3, racer, False

    def head_object(self, **params: Any) -> Any:
        try:
            return self.s3.head_object(**params)
        finally:
            if not self.raced:
                self.raced = True
                self.s3.put_object(
                    Bucket=params["Bucket"],
                    Key=params["Key"],
                    Body=b"the racer's",
                    Metadata={JOB_ID_METADATA: self.racer},
                )

    def __getattr__(self, name: str) -> Any:
        return getattr(self.s3, name)


def test_an_object_created_after_the_check_is_refused_by_s3_itself(store, moto_s3):
    record = rendered(store, moto_s3, "job-a")
    key = output_keys(record)["result"]

    with pytest.raises(TalkstackError, match="OUTPUT_EXISTS"):
        write_result_json(RacingS3(moto_s3, "job-b"), record, OUTPUT)

    assert moto_s3.get_object(Bucket=OUTPUT, Key=key)["Body"].read() == b"the racer's"


def test_a_race_won_by_another_run_of_the_same_job_is_not_a_conflict(store, moto_s3):
    record = rendered(store, moto_s3, "job-a")
    key = output_keys(record)["result"]

    write_result_json(RacingS3(moto_s3, "job-a"), record, OUTPUT)

    assert JobRecord.model_validate_json(moto_s3.get_object(Bucket=OUTPUT, Key=key)["Body"].read()) == record


def test_each_copy_carries_the_condition_it_was_checked_under(s3):
    """S3's CopyObject takes If-None-Match / If-Match too (moto ignores them on copies, so the FakeS3
    records what was sent: botocore validated it against the real API's shape)."""
    s3.put_object(Bucket=WORK, Key="work/v.mp4", Body=b"video")
    publish(s3, WORK, "work/v.mp4", OUTPUT, "a/video.mp4", "video/mp4", "job-a", 5)
    publish(s3, WORK, "work/v.mp4", OUTPUT, "a/video.mp4", "video/mp4", "job-a", 5)  # its own: again

    first, second = s3.called("CopyObject")
    assert first["IfNoneMatch"] == "*" and "IfMatch" not in first
    assert second["IfMatch"] == s3.objects[(OUTPUT, "a/video.mp4")].etag and "IfNoneMatch" not in second


class ConditionalS3:
    """FakeS3 whose CopyObject honours If-Match / If-None-Match, as S3 does (412 when they fail)."""

    def __init__(self, s3: Any) -> None:
        self._s3 = s3

    def __getattr__(self, name: str) -> Any:
        return getattr(self._s3, name)

    def copy_object(self, **params: Any) -> Any:
        current = self._s3.objects.get((params["Bucket"], params["Key"]))
        stale = ("IfMatch" in params and (current is None or current.etag != params["IfMatch"])) or (
            "IfNoneMatch" in params and current is not None
        )
        if stale:
            raise client_error("CopyObject", "PreconditionFailed", "a precondition failed", 412)
        return self._s3.copy_object(**params)


@pytest.mark.parametrize("owner", ["job-a", "job-b"])
def test_a_target_changed_since_the_check_is_looked_at_again(s3, owner):
    # Given the check found the key free, and then an object landed there (this job's retry, or another job's)
    s3.put_object(Bucket=WORK, Key="work/v.mp4", Body=b"video")
    checked = check_targets(s3, OUTPUT, ["a/video.mp4"], "job-a")
    s3.put_object(Bucket=OUTPUT, Key="a/video.mp4", Body=b"landed", Metadata={JOB_ID_METADATA: owner})
    copy = Copy(WORK, "work/v.mp4", OUTPUT, "a/video.mp4", "video/mp4", 5)

    landed = s3.objects[(OUTPUT, "a/video.mp4")].etag

    if owner == "job-a":  # its own: the copy under the stale condition fails, a fresh look lets it write
        publish_all(threaded(ConditionalS3(s3)), [copy], "job-a", checked)
        assert s3.objects[(OUTPUT, "a/video.mp4")].body == b"video"
        assert [c.get("IfMatch") for c in s3.called("CopyObject")] == [landed]
    else:  # another job's: refused, and theirs stays
        with pytest.raises(TalkstackError, match="OUTPUT_EXISTS"):
            publish_all(threaded(ConditionalS3(s3)), [copy], "job-a", checked)
        assert s3.objects[(OUTPUT, "a/video.mp4")].body == b"landed"
