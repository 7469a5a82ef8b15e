"""The pre-signed URLs of the worker protocol, against an S3 server that checks signatures and expiry.

moto accepts any signature, so the other protocol tests cannot tell a URL S3 would refuse. Here the
server is SeaweedFS with one identity configured (tests/support/real_s3.py): it refuses a tampered
signature, a wrong secret, an unsigned request, a header that differs from the signed one and an
expired URL (checked first, so the rest means something). Then the product's own code makes the
URLs (dispatch's Presigner through aws.RegionalPresigner, the API's upload tickets) and the
worker's own code uses them (talkstack.workers.runner: its exact GET and PUT, headers included).
"""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import boto3
import httpx
import pytest
from moto.server import ThreadedMotoServer

from talkstack.api.keys import Principal
from talkstack.api.models import UploadRequest
from talkstack.api.uploads import Uploads
from talkstack.contract.record import JobRecord
from talkstack.contract.state import DispatchInput
from talkstack.contract.worker import (
    AvatarTask,
    ErrorMarker,
    ProgressMarker,
    ResultMarker,
    WorkerTask,
    cancel_flag_key,
    marker_key,
)
from talkstack.engines.base import RenderResult
from talkstack.errors import ErrorCode, TalkstackError
from talkstack.pipeline.dispatch import Presigner, dispatch_step
from talkstack.pipeline.plan import plan_job
from talkstack.pipeline.store import JobStore
from talkstack.settings import MediaLimits
from talkstack.workers.runner import Transfers, new_client, run_task
from tests.support.fakes import REGION, FakeBackends, create_jobs_table
from tests.support.real_s3 import RealS3
from tests.support.steps import INPUT, JOBS_TABLE, SAMPLES, WORK, avatar_request, make_config

pytestmark = pytest.mark.timeout(120)

AWKWARD_KEYS = [
    "inputs/with space/voice over.wav",
    "inputs/ünïcödé/声音 ☃.wav",
    "inputs/a+b/c+d.wav",
    "inputs/100%/50%25.wav",
    "inputs/k=v&x=y/q?.wav",
    "inputs/#hash/#tag.wav",
    "inputs/tilde~quote'(1)!*,;:@$.wav",
    "inputs/" + "/".join(["long-segment-" + "x" * 60] * 12) + ".wav",  # ~900 of S3's 1024 bytes
]


@pytest.fixture(scope="module")
def buckets(real_s3: RealS3) -> RealS3:
    for bucket in (INPUT, WORK):
        real_s3.create_bucket(bucket)
    return real_s3


@pytest.fixture(scope="module")
def moto_endpoint() -> Iterator[str]:
    """The job store's DynamoDB on a moto server of this module's own. Not `mock_aws()`: entering
    and leaving it resets moto's backends for the whole process, which would wipe the tables and
    buckets of the local stack that later integration tests share."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    yield f"http://127.0.0.1:{port}"
    server.stop()


def jobs_table(endpoint: str) -> Any:
    """A DynamoDB client on that server with a jobs table of its own (other tests' tables stay)."""
    ddb = boto3.client(
        "dynamodb",
        region_name=REGION,
        endpoint_url=endpoint,
        aws_access_key_id="t",
        aws_secret_access_key="t",
    )
    if JOBS_TABLE not in ddb.list_tables()["TableNames"]:
        create_jobs_table(ddb, JOBS_TABLE)
    return ddb


@pytest.fixture
def http() -> Iterator[httpx.Client]:
    with new_client() as client:  # the runner's own client (timeouts, no extra headers)
        yield client


def status(response: httpx.Response) -> tuple[int, str]:
    """Status and S3 error code of a response."""
    code = response.text.split("<Code>")[1].split("</Code>")[0] if "<Code>" in response.text else ""
    return response.status_code, code


def tampered(url: str) -> str:
    parts = urlsplit(url)
    query = parse_qs(parts.query)
    signature = query["X-Amz-Signature"][0]
    flipped = ("0" if signature[0] != "0" else "1") + signature[1:]
    return url.replace(f"X-Amz-Signature={signature}", f"X-Amz-Signature={flipped}")


# --- the server is a real check ----------------------------------------------------------------------


def test_the_server_refuses_what_s3_refuses(buckets, http):
    s3 = buckets.client()
    s3.put_object(Bucket=INPUT, Key="checks/hello.txt", Body=b"hello")
    params = {"Bucket": INPUT, "Key": "checks/hello.txt"}
    good = s3.generate_presigned_url("get_object", Params=params, ExpiresIn=60)
    assert http.get(good).content == b"hello"

    assert status(http.get(tampered(good))) == (403, "SignatureDoesNotMatch")
    wrong_secret = buckets.client(secret="not-the-secret")
    assert status(http.get(wrong_secret.generate_presigned_url("get_object", Params=params)))[0] == 403
    assert status(http.get(f"{buckets.endpoint_url}/{INPUT}/checks/hello.txt"))[0] == 403  # unsigned
    put = s3.generate_presigned_url(
        "put_object", Params={**params, "Key": "checks/x.mp4", "ContentType": "video/mp4"}, ExpiresIn=60
    )
    sent = http.put(put, content=b"v", headers={"Content-Type": "text/plain"})
    assert status(sent) == (403, "SignatureDoesNotMatch")  # a signed header changed


def test_urls_expire_for_the_server_and_the_worker_sees_it(buckets, http, tmp_path):
    s3, signer = buckets.client(), buckets.presigner()
    s3.put_object(Bucket=INPUT, Key="checks/expiring.wav", Body=b"RIFF")
    for bucket in (INPUT, WORK):
        signer.region(bucket)  # looked up now, so that signing below takes no time
    lifetime = 3  # X-Amz-Date is in whole seconds: a URL lives between lifetime-1 and lifetime s
    signed_at = time.monotonic()
    raw = s3.generate_presigned_url(
        "get_object", Params={"Bucket": INPUT, "Key": "checks/expiring.wav"}, ExpiresIn=lifetime
    )
    sign = Presigner(signer, expires_in=lifetime)
    get, put = sign.get(INPUT, "checks/expiring.wav", "audio.wav"), sign.put(WORK, "work/j/a/late.mp4")
    assert http.get(raw).status_code == 200  # valid until it expires
    time.sleep(max(0.0, signed_at + lifetime + 1.2 - time.monotonic()))

    assert status(http.get(raw)) == (403, "AccessDenied")  # "Request has expired"
    transfers = Transfers(http)
    with pytest.raises(TalkstackError) as late:
        transfers.download(get.url, tmp_path / get.filename, "audio")
    assert late.value.code == ErrorCode.INPUT_NOT_FOUND and "403" in late.value.message
    with pytest.raises(httpx.HTTPStatusError) as refused:
        transfers.upload(put, b"too late")
    assert refused.value.response.status_code == 403


# --- what the product signs, used as the worker uses it -------------------------------------------------


@pytest.mark.parametrize("key", AWKWARD_KEYS, ids=range(len(AWKWARD_KEYS)))
def test_awkward_keys_round_trip_through_the_workers_get_and_put(buckets, http, tmp_path, key):
    s3 = buckets.client()
    body = f"bytes of {key}".encode()
    s3.put_object(Bucket=INPUT, Key=key, Body=body)
    sign, transfers = Presigner(buckets.presigner(), expires_in=300), Transfers(http)

    got = transfers.download(sign.get(INPUT, key, "audio.wav").url, tmp_path / "audio.wav", "audio")
    assert got.read_bytes() == body

    target = sign.put(WORK, key.replace("inputs/", "work/job/attempt/").removesuffix(".wav") + ".mp4")
    assert transfers.upload(target, body) == len(body)
    stored = s3.get_object(Bucket=WORK, Key=target.key)
    assert stored["Body"].read() == body and stored["ContentType"] == "video/mp4"


def echo_engine(task: WorkerTask, inputs: dict[str, Path], outdir: Path, progress: Any) -> Any:
    """A stand-in engine: the outputs are the inputs' bytes (the transfers are what is tested)."""
    progress(0.5, "echoing")
    video, thumbnail = outdir / "video.mp4", outdir / "thumbnail.jpg"
    video.write_bytes(inputs["audio"].read_bytes())
    thumbnail.write_bytes(inputs["image"].read_bytes())
    produced = {"video": video, "thumbnail": thumbnail}
    return produced, RenderResult(output=video, bytes=video.stat().st_size, duration_s=1.0)


@pytest.fixture
def dispatched(buckets, moto_endpoint, no_pipeline_environment) -> Iterator[tuple[AvatarTask, Any]]:
    """An avatar step dispatched by the real dispatch code (job store on moto's DynamoDB), its URLs
    signed by the product's pre-signer for the real server."""
    s3 = buckets.client()
    for name in ("portrait.png", "speech.wav"):
        s3.put_object(Bucket=INPUT, Key=f"inputs/talk/{name}", Body=(SAMPLES / name).read_bytes())
    config = make_config()
    store = JobStore(JOBS_TABLE, jobs_table(moto_endpoint))
    job_id = f"real-s3-{time.monotonic_ns()}"
    assert store.create(JobRecord.new(job_id, avatar_request()))
    plan_job(job_id, config, store)
    event = DispatchInput.model_validate({"task_token": "t-1", "job_id": job_id, "step": "avatar"})
    backends = FakeBackends()
    dispatch_step(event, config, store, buckets.presigner(), backends)
    (task,) = backends.submitted  # as the worker receives it: through its JSON form
    assert isinstance(task, AvatarTask)
    yield task, s3


def test_a_dispatched_task_runs_through_the_worker_against_real_s3(dispatched, http):
    task, s3 = dispatched
    assert run_task(task, client=http, step=echo_engine)

    def marker(kind: str) -> bytes:
        return s3.get_object(Bucket=WORK, Key=marker_key(task.job_id, task.attempt_id, kind))["Body"].read()

    result = ResultMarker.model_validate_json(marker("result"))
    assert ProgressMarker.model_validate_json(marker("progress")).attempt_id == task.attempt_id
    assert "Contents" not in s3.list_objects_v2(
        Bucket=WORK, Prefix=marker_key(task.job_id, task.attempt_id, "error")
    )
    sent = {
        "video": (SAMPLES / "speech.wav").read_bytes(),
        "thumbnail": (SAMPLES / "portrait.png").read_bytes(),
    }
    for role, output in result.outputs.items():
        stored = s3.get_object(Bucket=WORK, Key=output.key)
        assert stored["Body"].read() == sent[role] and output.bytes == len(sent[role])
        assert stored["ContentType"] == output.content_type == task.outputs[role].content_type


def test_the_cancel_flag_url_stops_the_worker(dispatched, http):
    task, s3 = dispatched
    s3.put_object(Bucket=WORK, Key=cancel_flag_key(task.job_id), Body=b"{}")
    assert not run_task(task, client=http, step=echo_engine)
    written = s3.list_objects_v2(Bucket=WORK, Prefix=f"work/{task.job_id}/").get("Contents", [])
    assert written == []  # nothing uploaded for a cancelled job
    with pytest.raises(s3.exceptions.NoSuchKey):
        s3.get_object(Bucket=WORK, Key=marker_key(task.job_id, task.attempt_id, "result"))


def test_a_task_whose_urls_were_tampered_with_cannot_write_its_result(dispatched, http):
    task, s3 = dispatched
    forged = task.model_copy(
        update={"markers": task.markers.model_copy(update={"result": _forged(task.markers.result)})}
    )
    assert not run_task(forged, client=http, step=echo_engine)
    error = ErrorMarker.model_validate_json(
        s3.get_object(Bucket=WORK, Key=marker_key(task.job_id, task.attempt_id, "error"))["Body"].read()
    )
    assert error.retryable and "403" in error.error.message


def _forged(target: Any) -> Any:
    return target.model_copy(update={"url": tampered(target.url)})


# --- the API's upload tickets ------------------------------------------------------------------------


@pytest.fixture
def uploads(buckets, moto_endpoint) -> Iterator[Uploads]:
    ddb = jobs_table(moto_endpoint)
    yield Uploads(JOBS_TABLE, ddb, buckets.client(), INPUT, MediaLimits(), presign=buckets.presigner())


def test_an_upload_ticket_takes_exactly_the_declared_file(uploads, buckets, http):
    data = (SAMPLES / "portrait.png").read_bytes()
    principal = Principal("key-1", "pro", "tests")
    ticket = uploads.create(
        principal, UploadRequest(filename="my portrait (1).png", content_type="image/png", bytes=len(data))
    )
    signed = parse_qs(urlsplit(ticket.url).query)["X-Amz-SignedHeaders"][0].split(";")
    assert {"content-type", "content-length"} <= set(signed)

    assert status(http.put(ticket.url, content=data[:-1], headers={"Content-Type": "image/png"}))[0] == 403
    assert status(http.put(ticket.url, content=data, headers={"Content-Type": "image/jpeg"}))[0] == 403
    assert http.put(ticket.url, content=data, headers=ticket.headers).status_code == 200

    upload = uploads.get(principal, ticket.upload_id)
    assert upload is not None
    stored = buckets.client().get_object(Bucket=upload.bucket, Key=upload.key)
    assert stored["Body"].read() == data and stored["ContentType"] == "image/png"
