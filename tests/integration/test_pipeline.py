"""The pipeline against the running local stack, with real media: S3 drop → Lambda → Step Functions →
worker → S3 → SNS + signed webhook. Faults are injected only at the worker boundary (FaultPlan).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path
from urllib.parse import quote_plus

import pytest
from standardwebhooks import Webhook

from talkstack.contract.events import JobEvent
from talkstack.contract.record import JobRecord
from talkstack.contract.state import SegmentPlan
from talkstack.contract.worker import ResultMarker, StepAddress, marker_key
from talkstack.local.resources import LOCAL_WEBHOOK_SECRET
from talkstack.media.video import iter_frames, probe_video
from talkstack.pipeline.jobids import job_id_for_object
from tests.support.consent import with_consent

pytestmark = pytest.mark.slow


def avatar_manifest(pipeline, **extra):
    return {
        "task": "avatar",
        "inputs": {"image": "portrait.png", "audio": "speech.wav"},
        "notify": {"webhook_url": pipeline.hooks.url},
        **extra,
    }


def avatar_media(media):
    return {"portrait.png": media["portrait"], "speech.wav": media["speech_5s"]}


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def assert_published(pipeline, record: JobRecord, tmp_path: Path) -> None:
    """A playable MP4 under the predictable key, its thumbnail, and result.json = the record."""
    assert record.status == "completed", record.error
    assert record.request is not None and record.result is not None
    video_key = record.request.output_key(record.job_id)
    assert video_key == f"{record.job_id}/video.mp4"
    keys = pipeline.keys(pipeline.r.output_bucket, f"{record.job_id}/")
    assert set(keys) == {video_key, f"{record.job_id}/thumbnail.jpg", f"{record.job_id}/result.json"}
    local = tmp_path / "video.mp4"
    pipeline.s3.download_file(pipeline.r.output_bucket, video_key, str(local))
    info = probe_video(local)
    assert info.video is not None and info.video.codec == "h264"
    assert info.audio is not None and info.audio.codec == "aac"
    assert abs(info.duration_s - 5.0) < 0.2
    body = pipeline.s3.get_object(Bucket=pipeline.r.output_bucket, Key=f"{record.job_id}/result.json")["Body"]
    assert JobRecord.model_validate_json(body.read()) == record


def test_aws_cli_drop_produces_video_result_sns_event_and_verified_webhook(pipeline, media, tmp_path):
    folder = tmp_path / "job"
    folder.mkdir()
    (folder / "job.json").write_text(json.dumps(avatar_manifest(pipeline)))
    aws = Path(sys.executable).parent / "aws"
    env = {**os.environ, **pipeline.r.client_env()}
    name = unique("cli drop")  # a space: the event key arrives URL-encoded
    prefix = f"s3://{pipeline.r.input_bucket}/inputs/{name}"
    for src, dst in (
        (media["portrait"], "portrait.png"),
        (media["speech_5s"], "speech.wav"),
        (folder / "job.json", "job.json"),
    ):
        subprocess.run(
            [str(aws), "s3", "cp", str(src), f"{prefix}/{dst}"], env=env, check=True, capture_output=True
        )

    head = pipeline.s3.head_object(Bucket=pipeline.r.input_bucket, Key=f"inputs/{name}/job.json")
    job_id = job_id_for_object(pipeline.r.input_bucket, f"inputs/{name}/job.json", head["ETag"], name)
    record = pipeline.wait(job_id)

    assert_published(pipeline, record, tmp_path)
    # The published video carries content credentials finalize signed with the stack's signer (a
    # throwaway one locally: valid, untrusted), naming the model and the job, and the watermark
    # the engine embedded (docs/safety.md).
    from talkstack.safety.credentials import read_credentials
    from talkstack.safety.watermark_video import detect_frames
    from talkstack.settings.provenance import PUBLIC_WATERMARK_KEY

    credentials = read_credentials(tmp_path / "video.mp4")
    assert credentials.validation_state == "Valid", credentials
    assert credentials.failures == ["signingCredential.untrusted"]
    assert credentials.models == ["lite-avatar"] and credentials.job_id == job_id and credentials.ai_generated
    assert detect_frames(iter_frames(tmp_path / "video.mp4"), PUBLIC_WATERMARK_KEY).detected
    assert record.result.warnings == []  # the stack's own signer, not the no-signer fallback
    assert record.source is not None and record.source.key == f"inputs/{name}/job.json"
    assert [s.name for s in record.steps] == ["moderate", "avatar", "finalize"]
    assert record.result.estimated_cost_usd is not None
    completed = pipeline.sns.for_job(job_id, "job.completed")
    assert len(completed) == 1
    event = JobEvent.model_validate(completed[0])
    assert event.result is not None and event.result.key == f"{job_id}/video.mp4"
    assert event.result.thumbnail_key == f"{job_id}/thumbnail.jpg"
    delivery = pipeline.hooks.wait_for(job_id, "job.completed")
    # Verify independently of the receiver, with the library a user's endpoint would use.
    assert Webhook(LOCAL_WEBHOOK_SECRET).verify(delivery.body, delivery.headers)["job_id"] == job_id
    assert delivery.headers["webhook-id"] == event.event_id
    types = [e.type for e in pipeline.store.events(job_id)]
    assert types[0] == "job.queued" and "job.started" in types and types[-1] == "job.completed"


def test_duplicate_deliveries_start_one_execution(pipeline, media):
    name = unique("dup Ünïcode+plus")
    dropped = pipeline.drop(avatar_manifest(pipeline), avatar_media(media), name)
    head = pipeline.s3.head_object(Bucket=pipeline.r.input_bucket, Key=dropped.manifest_key)
    event = {
        "Records": [
            {
                "eventVersion": "2.1",
                "eventSource": "aws:s3",
                "awsRegion": pipeline.r.region,
                "eventName": "ObjectCreated:Put",
                "s3": {
                    "s3SchemaVersion": "1.0",
                    "bucket": {
                        "name": pipeline.r.input_bucket,
                        "arn": f"arn:aws:s3:::{pipeline.r.input_bucket}",
                    },
                    "object": {
                        "key": quote_plus(dropped.manifest_key),
                        "size": head["ContentLength"],
                        "eTag": head["ETag"].strip('"'),
                    },
                },
            }
        ]
    }
    lam = pipeline.stack.client("lambda")
    outcomes = []
    for _ in range(3):  # the upload itself was the first delivery
        response = lam.invoke(FunctionName=pipeline.r.function_name("ingest"), Payload=json.dumps(event))
        outcomes.append(json.loads(response["Payload"].read())["outcomes"][0])
    assert {o["job_id"] for o in outcomes} == {dropped.job_id}
    assert all(o["action"] == "duplicate" for o in outcomes)

    record = pipeline.wait(dropped.job_id)
    assert record.status == "completed"
    assert len(pipeline.executions(dropped.job_id)) == 1
    assert len(pipeline.sns.for_job(dropped.job_id, "job.completed")) == 1
    assert len(pipeline.keys(pipeline.r.output_bucket, f"{dropped.job_id}/video")) == 1
    assert len([d for d in pipeline.hooks.received(dropped.job_id, "job.completed") if d.status < 300]) == 1


def test_multipart_manifest_upload_starts_one_execution(pipeline, media):
    name = unique("multipart")
    for key, path in avatar_media(media).items():
        pipeline.s3.upload_file(str(path), pipeline.r.input_bucket, f"inputs/{name}/{key}")
    key = f"inputs/{name}/job.json"
    upload = pipeline.s3.create_multipart_upload(Bucket=pipeline.r.input_bucket, Key=key)
    part = pipeline.s3.upload_part(
        Bucket=pipeline.r.input_bucket,
        Key=key,
        UploadId=upload["UploadId"],
        PartNumber=1,
        Body=json.dumps(avatar_manifest(pipeline)).encode(),
    )
    done = pipeline.s3.complete_multipart_upload(
        Bucket=pipeline.r.input_bucket,
        Key=key,
        UploadId=upload["UploadId"],
        MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": part["ETag"]}]},
    )
    job_id = job_id_for_object(pipeline.r.input_bucket, key, done["ETag"], name)
    assert pipeline.wait(job_id).status == "completed"
    assert len(pipeline.executions(job_id)) == 1
    assert len(pipeline.sns.for_job(job_id, "job.completed")) == 1


def test_direct_start_execution_with_json_input(pipeline, media, tmp_path):
    name = unique("direct")
    for key, path in avatar_media(media).items():
        pipeline.s3.upload_file(str(path), pipeline.r.input_bucket, f"uploads/{name}/{key}")
    request = {
        "task": "avatar",
        "job_id": name,
        "inputs": {
            "image": f"s3://{pipeline.r.input_bucket}/uploads/{name}/portrait.png",
            "audio": f"s3://{pipeline.r.input_bucket}/uploads/{name}/speech.wav",
        },
    }
    pipeline.sfn.start_execution(
        stateMachineArn=pipeline.r.state_machine_arn, name=name, input=json.dumps(request)
    )
    record = pipeline.wait(name)
    assert_published(pipeline, record, tmp_path)
    assert record.source is not None and record.source.kind == "execution"
    assert len(pipeline.sns.for_job(name, "job.completed")) == 1


def test_text_driven_avatar_chains_voice_then_avatar(pipeline, media):
    manifest = {"task": "avatar", "inputs": {"image": "portrait.png", "text": "Hello from the voice step."}}
    dropped = pipeline.drop(manifest, {"portrait.png": media["portrait"]}, unique("text"))
    record = pipeline.wait(dropped.job_id)
    assert record.status == "completed", record.error
    assert [s.name for s in record.steps] == ["moderate", "voice", "avatar", "finalize"]
    assert [s.model for s in record.steps[1:3]] == ["lite-voice", "lite-avatar"]  # after moderate
    assert record.result is not None and record.result.duration_s and record.result.duration_s > 1


def test_transient_worker_failure_is_retried_then_completes(pipeline, media):
    job_id = unique("transient")
    pipeline.stack.faults.add(job_id, "avatar", "transient")
    dropped = pipeline.drop(avatar_manifest(pipeline, job_id=job_id), avatar_media(media), job_id)
    record = pipeline.wait(dropped.job_id)
    assert record.status == "completed", record.error
    assert record.step("avatar").attempts == 2
    assert pipeline.store.get_worker_error(job_id, "avatar").message.startswith("injected transient")


def test_a_parallel_chunk_that_fails_its_quality_checks_is_rendered_once_more(pipeline, media):
    # Given the first chunk render a worker takes reports a failing quality report (a FaultPlan fault)
    job_id = unique("requality")
    pipeline.stack.faults.add(job_id, "avatar", "poor_quality")
    manifest = avatar_manifest(pipeline, job_id=job_id, options={"long_audio": "parallel"})
    media_files = {"portrait.png": media["portrait"], "speech.wav": media["speech"]}
    # No more chunks at once than the local pool has workers (as the Plan caps a Modal avatar at its
    # containers): a chunk queued behind others sends no heartbeat, and on a loaded machine its attempt
    # timed out before it started; the retry then rendered cleanly and nothing was sent back.
    settings = {
        "parallel_chunk_seconds": "6",
        "parallel_min_chunk_seconds": "2",
        "heartbeat_seconds": "20",
        "parallel_max_concurrency": "2",
    }
    with pipeline.configured(**settings):
        pipeline.drop(manifest, media_files, job_id)
        record = pipeline.wait(job_id, timeout_s=240)

    # Then the state machine retried that chunk once (Quality.Rerender), as a new attempt, and stitched
    # (the engine's own reports may send other chunks back too: each at most once, the same way)
    assert record.status == "completed", record.error
    chunks = pipeline.store.get_step_result(job_id, "segment", SegmentPlan).chunks
    assert len(chunks) > 1
    sent_back = [
        c.index
        for c in chunks
        if pipeline.store.get_step_result(job_id, f"rejected:avatar#{c.index}", ResultMarker) is not None
    ]
    assert sent_back
    billed = record.step("avatar").worker_seconds
    for k in sent_back:
        first = pipeline.store.get_step_result(job_id, f"rejected:avatar#{k}", ResultMarker)
        used = pipeline.store.get_step_result(job_id, StepAddress(step="avatar", chunk=k), ResultMarker)
        assert first.attempt_id.startswith(f"avatar-c{k}-1-")
        # A later attempt: the second ($$.State.RetryCount 1), or, when that one timed out on a loaded
        # machine (seen once: a fresh pool worker still warming up), the retry after it.
        assert used.attempt_id.startswith(f"avatar-c{k}-") and int(used.attempt_id.split("-")[2]) >= 2
        assert any(w.startswith(f"chunk {k} was rendered again") for w in record.result.warnings)
        assert {first.attempt_id, used.attempt_id} <= set(billed)  # both renders are billed


def test_silent_worker_times_out_is_retried_then_fails_clearly(pipeline, media):
    job_id = unique("silent")
    pipeline.stack.faults.add(job_id, "avatar", "silent", "silent", "silent")
    pipeline.drop(avatar_manifest(pipeline, job_id=job_id), avatar_media(media), job_id)
    record = pipeline.wait(job_id, timeout_s=120)
    assert record.status == "failed"
    assert record.error.code == "WORKER_TIMEOUT"
    assert record.error.step == "avatar"
    assert "stopped sending heartbeats" in record.error.message and "3 attempt" in record.error.message
    assert record.step("avatar").attempts == 3
    assert pipeline.keys(pipeline.r.output_bucket, f"{job_id}/") == {}
    failed = pipeline.sns.for_job(job_id, "job.failed")
    assert len(failed) == 1 and failed[0]["error"]["code"] == "WORKER_TIMEOUT"
    assert pipeline.hooks.wait_for(job_id, "job.failed").event["error"]["code"] == "WORKER_TIMEOUT"


def test_fatal_engine_error_fails_at_once_without_retry(pipeline, media):
    media_files = {"portrait.png": media["no_face"], "speech.wav": media["speech_5s"]}
    # (a photo of no one is still a user's photo: it comes with a consent attestation)
    dropped = pipeline.drop(with_consent(avatar_manifest(pipeline)), media_files, unique("no face"))
    record = pipeline.wait(dropped.job_id)
    assert record.status == "failed"
    assert record.error.code == "NO_FACE_DETECTED" and record.error.step == "avatar"
    # Not retried: the attempt that found no face was the last. (On a loaded runner an earlier
    # attempt has been seen to time out before its worker started, which is the heartbeat retry doing
    # its job, not a retry of the fatal error: such an attempt reported nothing.)
    attempts = sorted(
        pipeline.store.attempt_tokens(dropped.job_id).items(), key=lambda kv: kv[0].split("-")[1]
    )
    assert attempts and attempts[-1][1].state == "failed"
    assert all(token.state in ("waiting", "closed") for _, token in attempts[:-1]), attempts
    assert record.step("avatar").attempts == len(attempts) <= 2
    assert pipeline.keys(pipeline.r.output_bucket, f"{dropped.job_id}/") == {}
    assert pipeline.sns.for_job(dropped.job_id, "job.failed")[0]["error"]["code"] == "NO_FACE_DETECTED"


@pytest.fixture(scope="module")
def foreign_bucket(pipeline, media):
    pipeline.s3.create_bucket(Bucket="someone-elses-bucket")
    pipeline.s3.upload_file(str(media["portrait"]), "someone-elses-bucket", "portrait.png")
    return "someone-elses-bucket"


BAD_MANIFESTS = {
    "unknown field": ({"colour": "blue"}, "INVALID_REQUEST", "colour"),
    "missing media": (
        {"inputs": {"image": "portrait.png", "audio": "nowhere.wav"}},
        "INPUT_NOT_FOUND",
        "nowhere.wav",
    ),
    "other bucket": (
        {"inputs": {"image": "s3://someone-elses-bucket/portrait.png", "audio": "speech.wav"}},
        "INPUT_NOT_FOUND",
        "s3://someone-elses-bucket/portrait.png does not exist or this drop folder may not read it",
    ),
    "path traversal": (
        {"inputs": {"image": "../secret/portrait.png", "audio": "speech.wav"}},
        "INVALID_REQUEST",
        "..",
    ),
    "unsupported model": ({"options": {"model": "multitalk"}}, "MODEL_UNAVAILABLE", "multitalk"),
    "unknown model": ({"options": {"model": "sora"}}, "INVALID_REQUEST", "options.model"),
    "text too long": (
        {"inputs": {"image": "portrait.png", "text": "word " * 1200}},
        "TEXT_TOO_LONG",
        "limit is 5000",
    ),
    "private webhook": (
        {"notify": {"webhook_url": "https://169.254.169.254/hook"}},
        "INVALID_REQUEST",
        "169.254.169.254",
    ),
}


@pytest.mark.parametrize("case", list(BAD_MANIFESTS))
def test_bad_manifest_fails_with_a_specific_code_and_touches_nothing(pipeline, media, foreign_bucket, case):
    change, code, mention = BAD_MANIFESTS[case]
    manifest = avatar_manifest(pipeline)
    for key, value in change.items():
        manifest[key] = value if key != "options" else {**manifest.get("options", {}), **value}
    dropped = pipeline.drop(manifest, avatar_media(media), unique(case))
    before = pipeline.keys(pipeline.r.input_bucket, dropped.manifest_key.rsplit("/", 1)[0] + "/")

    record = pipeline.wait(dropped.job_id)
    assert record.status == "failed"
    assert record.error.code == code, record.error
    assert mention in record.error.message
    assert pipeline.keys(pipeline.r.input_bucket, dropped.manifest_key.rsplit("/", 1)[0] + "/") == before
    assert pipeline.keys(pipeline.r.output_bucket, f"{dropped.job_id}/") == {}
    failed = pipeline.sns.for_job(dropped.job_id, "job.failed")
    assert len(failed) == 1 and failed[0]["error"]["code"] == code
    if case != "private webhook":  # the webhook of a rejected request still hears why
        assert pipeline.hooks.wait_for(dropped.job_id, "job.failed").event["error"]["code"] == code


def test_invalid_json_manifest_fails_job_and_goes_to_dead_letter_queue(pipeline):
    key = f"inputs/{unique('broken')}/job.json"
    body = b'{"task": "avatar", "inputs": {'
    put = pipeline.s3.put_object(Bucket=pipeline.r.input_bucket, Key=key, Body=body)
    job_id = job_id_for_object(pipeline.r.input_bucket, key, put["ETag"], key.split("/")[1])
    record = pipeline.wait_rejected(job_id)
    assert record.status == "failed" and record.error.code == "INVALID_REQUEST"
    assert "invalid JSON" in record.error.message and "line 1" in record.error.message
    assert pipeline.s3.get_object(Bucket=pipeline.r.input_bucket, Key=key)["Body"].read() == body
    assert pipeline.wait_until(lambda: pipeline.sns.for_job(job_id, "job.failed"))
    sqs = pipeline.stack.client("sqs")
    messages = sqs.receive_message(QueueUrl=pipeline.r.dlq_url, MaxNumberOfMessages=10).get("Messages", [])
    letters = [json.loads(m["Body"]) for m in messages]
    assert any(letter["key"] == key and "invalid JSON" in letter["reason"] for letter in letters)


def test_webhook_down_is_retried_with_attempts_recorded_and_job_completes(pipeline, media):
    manifest = avatar_manifest(
        pipeline, notify={"webhook_url": pipeline.hooks.url, "events": ["job.completed"]}
    )
    pipeline.hooks.fail_next([503, 503])
    dropped = pipeline.drop(manifest, avatar_media(media), unique("flaky hook"))
    record = pipeline.wait(dropped.job_id)
    assert record.status == "completed"
    assert pipeline.hooks.wait_for(dropped.job_id, "job.completed").verified
    (report,) = pipeline.wait_until(lambda: pipeline.store.deliveries(dropped.job_id))
    assert report["delivered"] is True
    assert [a["status_code"] for a in report["attempts"]] == [503, 503, 204]


def test_webhook_unreachable_gives_up_and_job_still_completes(pipeline, media, free_port):
    dead = f"http://127.0.0.1:{free_port()}/hook"
    manifest = avatar_manifest(pipeline, notify={"webhook_url": dead, "events": ["job.completed"]})
    dropped = pipeline.drop(manifest, avatar_media(media), unique("dead hook"))
    record = pipeline.wait(dropped.job_id)
    assert record.status == "completed"
    (report,) = pipeline.wait_until(lambda: pipeline.store.deliveries(dropped.job_id))
    assert report["delivered"] is False
    assert len(report["attempts"]) == 3 and all(a["error"] for a in report["attempts"])
    assert len(pipeline.sns.for_job(dropped.job_id, "job.completed")) == 1


def test_marker_for_a_closed_or_unknown_attempt_is_tolerated(pipeline, media):
    dropped = pipeline.drop(avatar_manifest(pipeline), avatar_media(media), unique("late marker"))
    assert pipeline.wait(dropped.job_id).status == "completed"
    # A late heartbeat of an abandoned attempt: its token means nothing to Step Functions any more.
    avatar = StepAddress(step="avatar")
    pipeline.store.put_token(dropped.job_id, "avatar-9-0000000000", avatar, "not-a-live-token", ttl_s=60)
    marker = {"attempt_id": "avatar-9-0000000000", "progress": 0.5, "at": "2026-01-01T00:00:00Z"}
    key = marker_key(dropped.job_id, "avatar-9-0000000000", "progress")
    pipeline.s3.put_object(Bucket=pipeline.r.work_bucket, Key=key, Body=json.dumps(marker).encode())
    token = pipeline.wait_until(
        lambda: (
            pipeline.store.get_token(dropped.job_id, "avatar-9-0000000000").state != "waiting"
            and pipeline.store.get_token(dropped.job_id, "avatar-9-0000000000")
        )
    )
    assert token.state == "closed" and token.step == avatar
    # A marker of an attempt nobody dispatched is ignored; the finished job is untouched.
    stray = marker_key(dropped.job_id, "avatar-7-1111111111", "result")
    pipeline.s3.put_object(Bucket=pipeline.r.work_bucket, Key=stray, Body=b"{}")
    record = pipeline.store.get(dropped.job_id)
    assert record.status == "completed" and record.progress == 1.0


def test_manifest_with_an_unusable_job_id_is_rejected_under_the_derived_id(pipeline):
    key = f"inputs/{unique('bad id')}/job.json"
    manifest = {"task": "avatar", "job_id": "../evil", "inputs": {"image": "a.png", "audio": "a.wav"}}
    put = pipeline.s3.put_object(Bucket=pipeline.r.input_bucket, Key=key, Body=json.dumps(manifest).encode())
    job_id = job_id_for_object(pipeline.r.input_bucket, key, put["ETag"], key.split("/")[1])
    record = pipeline.wait_rejected(job_id)
    assert record.error.code == "INVALID_REQUEST" and record.error.message.startswith("job_id:")
    assert pipeline.executions("../evil") == []


def test_record_retention_puts_a_ttl_on_every_item_of_a_job(pipeline, media):
    """TALKSTACK_RECORD_RETENTION_DAYS reaches the handlers' store: a job's record, events and
    delivery logs all carry `expires_at` (the table's TTL attribute) about that far ahead."""
    before = int(time.time())
    with pipeline.configured(record_retention_days="2"):
        manifest = {**avatar_manifest(pipeline), "options": {"model": "no-such-model"}}
        dropped = pipeline.drop(manifest, avatar_media(media), unique("retention"))
        record = pipeline.wait(dropped.job_id)
        pipeline.hooks.wait_for(dropped.job_id, "job.failed")
        assert pipeline.wait_until(lambda: pipeline.store.deliveries(dropped.job_id))  # logged after the POST
    assert record.status == "failed"
    items = pipeline.store.ddb.query(
        TableName=pipeline.r.jobs_table,
        KeyConditionExpression="pk = :p",
        ExpressionAttributeValues={":p": {"S": f"JOB#{dropped.job_id}"}},
    )["Items"]
    kinds = {item["sk"]["S"].split("#")[0] for item in items}
    assert {"RECORD", "EVENT", "DELIVERY"} <= kinds
    for item in items:
        assert before + 2 * 86400 <= int(item["expires_at"]["N"]) <= int(time.time()) + 2 * 86400, item["sk"]
