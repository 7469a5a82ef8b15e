"""Pipeline logic that needs no AWS: job ids, plans, progress, URL lifetimes, error mapping."""

from __future__ import annotations

import json
from urllib.parse import parse_qs, urlsplit

import boto3
import pytest
from botocore.config import Config

from talkstack.contract.parse import parse_job_request
from talkstack.contract.record import JobError, JobRecord
from talkstack.contract.worker import StepAddress
from talkstack.errors import ErrorCode
from talkstack.pipeline.config import PipelineConfig
from talkstack.pipeline.dispatch import MAX_PRESIGN_SECONDS, Presigner, attempt_id_for, url_lifetime
from talkstack.pipeline.failure import job_error_from_states, salvage
from talkstack.pipeline.jobids import job_id_for_object, manifest_job_name, slug
from talkstack.pipeline.plan import plan_for, progress_span

CONFIG = PipelineConfig(
    input_bucket="in-bucket",
    output_bucket="out-bucket",
    work_bucket="work-bucket",
    jobs_table="jobs",
    events_topic_arn="arn:aws:sns:us-east-1:123456789012:events",
    ingest_dlq_url="http://localhost/dlq",
    state_machine_arn="arn:aws:states:us-east-1:123456789012:stateMachine:jobs",
    notify_function="notify",
    webhook_secret="whsec_dGVzdA==",
    heartbeat_seconds=30,
)
AVATAR = {"task": "avatar", "inputs": {"image": "a.png", "audio": "a.wav"}}
TEXT_AVATAR = {"task": "avatar", "inputs": {"image": "a.png", "text": "hello there"}}


def test_job_ids_are_stable_per_upload_and_change_with_content():
    a = job_id_for_object("b", "inputs/Démo Video+1/job.json", '"etag1"', "Démo Video+1")
    assert a == job_id_for_object("b", "inputs/Démo Video+1/job.json", "etag1", "Démo Video+1")
    assert a.startswith("demo-video-1-") and len(a) <= 80
    assert a != job_id_for_object("b", "inputs/Démo Video+1/job.json", "etag2", "Démo Video+1")
    assert slug("🙂") == "" and job_id_for_object("b", "inputs/🙂/job.json", "e", "🙂").startswith("job-")


def test_manifest_name_must_sit_under_the_input_prefix():
    assert manifest_job_name("inputs/a/b/job.json", "inputs/", "job.json") == "a/b"
    with pytest.raises(Exception, match="not a manifest"):
        manifest_job_name("elsewhere/a/job.json", "inputs/", "job.json")


def test_plan_chains_voice_before_avatar_and_keeps_timeout_above_heartbeat():
    plan = plan_for(parse_job_request(TEXT_AVATAR), CONFIG)
    assert plan.steps == ["voice", "avatar"] and plan.voice is True and plan.main == "avatar"
    for limits in plan.timeouts.values():
        assert limits.timeout_s > limits.heartbeat_s == 30
    voice_only = plan_for(parse_job_request({"task": "voice", "inputs": {"text": "hi"}}), CONFIG)
    assert voice_only.main == "none" and voice_only.voice is True


def test_progress_spans_cover_the_work_in_order():
    start, end = progress_span(["voice", "avatar"], "voice")
    assert start == 0 and 0 < end < 0.2
    a_start, a_end = progress_span(["voice", "avatar"], "avatar")
    assert a_start == pytest.approx(end) and a_end == pytest.approx(0.95)
    assert progress_span(["avatar"], "avatar") == (0.0, pytest.approx(0.95))


def test_presigned_urls_expire_with_the_step_not_later():
    lifetime = url_lifetime(timeout_s=900)
    assert lifetime == 900 + 300
    assert url_lifetime(10**7) == MAX_PRESIGN_SECONDS
    s3 = boto3.client(
        "s3",
        region_name="us-east-1",
        aws_access_key_id="x",
        aws_secret_access_key="y",
        config=Config(signature_version="s3v4"),
    )
    signed = Presigner(s3, lifetime).put("work-bucket", "work/j/a/video.mp4")
    query = parse_qs(urlsplit(signed.url).query)
    assert query["X-Amz-Expires"] == [str(lifetime)]
    assert signed.content_type == "video/mp4" and "content-type" in query["X-Amz-SignedHeaders"][0]


def test_attempt_ids_differ_per_token_and_fit_the_protocol():
    avatar = StepAddress(step="avatar")
    a, b = attempt_id_for(avatar, 0, "token-1"), attempt_id_for(avatar, 1, "token-2")
    assert a.startswith("avatar-1-") and b.startswith("avatar-2-") and a != b


class FakeStore:
    """In-memory stand-in for the jobs table's worker-error lookup."""

    def __init__(self, errors: dict[tuple[str, str], JobError]) -> None:
        self.errors = errors

    def get_worker_error(self, job_id: str, step: str) -> JobError | None:
        return self.errors.get((job_id, step))


def running_record() -> JobRecord:
    record = JobRecord.new("job-1", parse_job_request(AVATAR))
    record.start_step("avatar")
    record.start_step("avatar")  # second attempt
    return record


def test_states_errors_map_to_specific_codes():
    record = running_record()
    store = FakeStore({("job-1", "avatar"): JobError(code=ErrorCode.NO_FACE_DETECTED, message="no face")})
    # moto drops SendTaskFailure's cause: the stored worker error fills in
    fatal = job_error_from_states({"Error": "Worker.Fatal", "Cause": ""}, record, store)
    assert fatal.code == ErrorCode.NO_FACE_DETECTED
    silent = job_error_from_states({"Error": "States.HeartbeatTimeout"}, record, store)
    assert (
        silent.code == ErrorCode.WORKER_TIMEOUT and "2 attempt" in silent.message and silent.step == "avatar"
    )
    slow = job_error_from_states({"Error": "States.Timeout"}, record, store)
    assert slow.code == ErrorCode.WORKER_TIMEOUT and "time limit" in slow.message
    stored = JobError(code=ErrorCode.INPUT_NOT_FOUND, message="inputs.audio: gone", step="validate")
    cause = json.dumps({"errorMessage": stored.model_dump_json(), "errorType": "JobFailed"})
    assert (
        job_error_from_states({"Error": "JobFailed", "Cause": cause}, None, store).code
        == ErrorCode.INPUT_NOT_FOUND
    )
    bug = job_error_from_states(
        {"Error": "KeyError", "Cause": '{"errorType": "KeyError", "errorMessage": "x"}'}, record, store
    )
    assert bug.code == ErrorCode.GENERATION_FAILED and "KeyError: x" in bug.message


def test_salvage_keeps_only_valid_fields_of_a_rejected_request():
    task, rejected = salvage(
        {
            "task": "avatar",
            "callback_id": "c-1",
            "metadata": {"k": "v"},
            "notify": {"webhook_url": "https://example.com/hook"},
            "colour": "blue",
        }
    )
    assert (
        task == "avatar"
        and rejected.callback_id == "c-1"
        and rejected.webhook_url == "https://example.com/hook"
    )
    _task, bad = salvage({"notify": {"webhook_url": "ftp://x"}, "metadata": "not a dict"})
    assert bad.webhook_url is None and bad.metadata == {}
