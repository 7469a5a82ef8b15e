"""Tenant isolation over real HTTP against the running local stack, tried as an attacker with two
ordinary `pro` keys would (issue 15, findings 1, 2 and 10): key A can neither read key B's media nor
change one byte of B's outputs, whatever it references or chooses as `output`; an S3 drop reads only
its own folder; no error names a bucket the caller did not.

"Nothing is read" is checked on moto's own request log (its recorder logs every request the S3
server receives, HEAD and GET included), not on our belief about the code path."""

from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import pytest

from tests.integration.test_api import SAMPLES, Api, error_of
from tests.support.consent import consent_block, with_consent


def key_id(key: str) -> str:
    return key.split("_")[1]  # tsk_<id>_<secret>: the id is not secret


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


class Tenant(Api):
    def __init__(self, pipeline: Any) -> None:
        key = pipeline.api_key("pro", f"tenant-{uuid.uuid4().hex[:6]}")
        super().__init__(pipeline.api_url, key)
        self.id = key_id(key)

    def upload_key(self, path: Path, content_type: str) -> tuple[str, str]:
        """(upload id, the object's key in the input bucket): the key is in the pre-signed URL."""
        data = path.read_bytes()
        ticket = self.post(
            "/v1/uploads", json={"filename": path.name, "content_type": content_type, "bytes": len(data)}
        ).json()
        assert httpx.put(ticket["url"], content=data, headers=ticket["headers"]).status_code == 200
        object_key = httpx.URL(ticket["url"]).path.partition("/uploads/")[2]
        return ticket["upload_id"], f"uploads/{object_key}"

    def voice(self, **body: Any) -> httpx.Response:
        return self.post("/v1/voice/clone", json={"inputs": {"text": "Hello there."}, **body})

    def finished(self, answer: httpx.Response) -> dict:
        assert answer.status_code == 202, answer.text
        return self.wait(answer.json()["job_id"])


@pytest.fixture
def tenants(pipeline) -> tuple[Tenant, Tenant]:
    return Tenant(pipeline), Tenant(pipeline)


@pytest.fixture
def s3_requests(pipeline, tmp_path) -> Iterator[Any]:
    """What moto's S3 server was asked while the test body ran: a function returning the recorded
    requests as (method, raw URL). Recording goes to a file of this test's own."""
    from moto.moto_api import recorder  # the in-process server's recorder (the local stack is one process)

    endpoint = pipeline.r.endpoint
    before = recorder._location
    recorder._location = str(tmp_path / "moto-recording.jsonl")  # not the default ./moto_recording
    httpx.post(f"{endpoint}/moto-api/recorder/reset-recording").raise_for_status()
    httpx.post(f"{endpoint}/moto-api/recorder/start-recording").raise_for_status()

    def recorded() -> list[tuple[str, str]]:
        text = httpx.get(f"{endpoint}/moto-api/recorder/download-recording").text
        return [(e["method"], e["url"]) for e in map(json.loads, filter(None, text.splitlines()))]

    try:
        yield recorded
    finally:
        httpx.post(f"{endpoint}/moto-api/recorder/stop-recording").raise_for_status()
        recorder._location = before


def buckets_named(pipeline, text: str) -> set[str]:
    r = pipeline.r
    return {b for b in (r.input_bucket, r.output_bucket, r.work_bucket) if b in text}


def test_another_keys_media_is_not_found_by_any_name_and_never_read(pipeline, tenants, s3_requests):
    a, b = tenants
    r = pipeline.r
    # B's voice sample, by upload id and by its S3 key (visible in B's upload URL); a drop folder's
    theirs_id, theirs_key = b.upload_key(SAMPLES / "speech.wav", "audio/wav")
    guessed_key = f"inputs/{uuid.uuid4().hex[:8]}/speech.wav"
    pipeline.s3.upload_file(str(SAMPLES / "speech.wav"), r.input_bucket, guessed_key)
    start = len(s3_requests())

    hostile = {
        "B's upload id": theirs_id,
        "B's object": f"s3://{r.input_bucket}/{theirs_key}",
        "a drop folder's object": f"s3://{r.input_bucket}/{guessed_key}",
    }
    unsent = a.post("/v1/uploads", json={"filename": "x.wav", "content_type": "audio/wav", "bytes": 9})
    missing = {  # what A gets for things that do not exist
        "no such upload": "upl_" + "0" * 24,
        "A's upload whose bytes never came": unsent.json()["upload_id"],  # a HEAD, then 404
        "no such object of A's": f"s3://{r.input_bucket}/uploads/{a.id}/upl_{'0' * 24}/speech.wav",
    }
    answers = {
        name: a.voice(inputs={"text": "Hello there.", "reference_voice": ref})
        for name, ref in {**hostile, **missing}.items()
    }

    # Then every answer is the same 404 INPUT_NOT_FOUND, whose message differs only by the ref sent
    shapes = set()
    for name, answer in answers.items():
        ref = {**hostile, **missing}[name]
        assert answer.status_code == 404, (name, answer.text)
        error = error_of(answer)
        assert error["code"] == "INPUT_NOT_FOUND"
        shapes.add(
            (error["message"].replace(ref, "<ref>"), json.dumps(error["details"]).replace(ref, "<ref>"))
        )
        # and names no bucket but the one the caller wrote
        assert buckets_named(pipeline, answer.text) == buckets_named(pipeline, ref), name
    assert shapes == {
        (
            "inputs.reference_voice: <ref> does not exist or this API key may not read it",
            '{"field": "inputs.reference_voice", "ref": "<ref>"}',
        )
    }
    # Nothing was started, and S3 was never asked about B's object or the drop folder's (while A's
    # own missing key was looked up: the log is live)
    assert a.get("/v1/jobs").json()["jobs"] == []
    asked = s3_requests()[start:]
    assert not [u for _, u in asked if quote(theirs_key) in u or theirs_key in u], asked
    assert not [u for _, u in asked if quote(guessed_key) in u or guessed_key in u], asked
    assert any(m == "HEAD" and f"uploads/{a.id}/upl_" in u for m, u in asked), asked


def test_no_output_choice_of_a_lands_on_bs_objects(pipeline, tenants):
    a, b = tenants
    r = pipeline.r
    theirs = b.finished(b.voice())
    assert theirs["status"] == "completed", theirs["error"]
    (audio,) = theirs["result"]["outputs"]
    assert (
        audio["bucket"] == r.output_bucket and audio["key"] == f"tenants/{b.id}/{theirs['job_id']}/speech.wav"
    )
    result_key = audio["key"].rpartition("/")[0] + "/result.json"
    before = {
        "audio": sha256(httpx.get(audio["url"]).content),
        "result": sha256(pipeline.s3.get_object(Bucket=r.output_bucket, Key=result_key)["Body"].read()),
    }

    # When A tries every output that could reach B's objects
    job = theirs["job_id"]
    tries = [  # each lands somewhere else inside A's folder (two of A's jobs would collide otherwise)
        {"prefix": job},
        {"prefix": ""},
        {"prefix": "", "filename": "speech.mp3"},
        {"prefix": f"tenants/{b.id}/{job}"},
        {"bucket": r.output_bucket, "prefix": f"tenants/{b.id}/{job}", "filename": "speech.mp3"},
        {"prefix": f"tenants/{b.id}", "unique_suffix": True},
    ]
    placed = []
    for output in tries:
        mine = a.finished(a.voice(output=output))
        assert mine["status"] == "completed", (output, mine["error"])
        placed.append(mine["result"]["outputs"][0])
    refused = [
        a.voice(output={"bucket": r.work_bucket}),
        a.voice(output={"bucket": "someone-elses-bucket"}),
        a.voice(output={"prefix": f"../{b.id}"}),
    ]

    # Then A's outputs all landed under A's own folder, where GET /v1/jobs says they are
    assert [o["key"] for o in placed][:5] == [
        f"tenants/{a.id}/{job}/speech.wav",
        f"tenants/{a.id}/speech.wav",
        f"tenants/{a.id}/speech.mp3",
        f"tenants/{a.id}/tenants/{b.id}/{job}/speech.wav",
        f"tenants/{a.id}/tenants/{b.id}/{job}/speech.mp3",
    ]
    assert all(o["bucket"] == r.output_bucket and o["key"].startswith(f"tenants/{a.id}/") for o in placed)
    for answer in refused:
        assert answer.status_code == 400 and error_of(answer)["code"] == "INVALID_REQUEST", answer.text
    assert buckets_named(pipeline, refused[0].text) <= {r.work_bucket}
    assert buckets_named(pipeline, refused[1].text) == set()
    # A may read its own outputs back (and B's stay B's)
    own = f"s3://{r.output_bucket}/{placed[0]['key']}"
    reuse = a.finished(
        a.voice(inputs={"text": "Again.", "reference_voice": own}, consent=consent_block("voice"))
    )
    assert reuse["status"] == "completed", reuse["error"]
    stolen = a.voice(inputs={"text": "Again.", "reference_voice": f"s3://{r.output_bucket}/{audio['key']}"})
    assert stolen.status_code == 404 and error_of(stolen)["code"] == "INPUT_NOT_FOUND"
    # and B re-downloads the same bytes, and B's result.json is B's
    again = b.get(f"/v1/jobs/{theirs['job_id']}").json()["result"]["outputs"][0]
    assert sha256(httpx.get(again["url"]).content) == before["audio"]
    stored = pipeline.s3.get_object(Bucket=r.output_bucket, Key=result_key)
    assert sha256(stored["Body"].read()) == before["result"]
    assert stored["Metadata"]["talkstack-job-id"] == theirs["job_id"]


def test_a_second_job_never_overwrites_the_first_jobs_output(pipeline, tenants):
    a, _ = tenants
    first = a.finished(a.voice(output={"prefix": "fixed"}))
    assert first["status"] == "completed", first["error"]
    (audio,) = first["result"]["outputs"]
    before = sha256(httpx.get(audio["url"]).content)

    second = a.finished(a.voice(inputs={"text": "Something else."}, output={"prefix": "fixed"}))

    assert second["status"] == "failed" and second["error"]["code"] == "OUTPUT_EXISTS", second
    assert second["error"]["message"] == (
        f"output key tenants/{a.id}/fixed/speech.wav already holds another job's output; choose another "
        "output.prefix or set output.unique_suffix"
    )
    again = a.get(f"/v1/jobs/{first['job_id']}").json()["result"]["outputs"][0]
    assert sha256(httpx.get(again["url"]).content) == before
    suffixed = a.finished(a.voice(output={"prefix": "fixed", "unique_suffix": True}))
    assert suffixed["status"] == "completed", suffixed["error"]


@pytest.mark.parametrize("where", ["another drop folder", "an API upload"])
def test_a_drop_that_references_another_folders_media_fails(pipeline, media, tenants, s3_requests, where):
    r = pipeline.r
    if where == "an API upload":
        _, theirs_key = tenants[1].upload_key(SAMPLES / "speech.wav", "audio/wav")
    else:
        other = pipeline.drop(
            with_consent(
                {"task": "voice", "inputs": {"text": "Mine.", "reference_voice": "speech.wav"}}, "voice"
            ),
            {"speech.wav": media["speech_5s"]},
            f"victim-{uuid.uuid4().hex[:8]}",
        )
        theirs_key = other.manifest_key.rpartition("/")[0] + "/speech.wav"
        assert pipeline.wait(other.job_id).status == "completed"  # its own folder: read as before
    start = len(s3_requests())
    manifest = {
        "task": "voice",
        "inputs": {"text": "Hi.", "reference_voice": f"s3://{r.input_bucket}/{theirs_key}"},
    }

    dropped = pipeline.drop(manifest, {}, f"thief-{uuid.uuid4().hex[:8]}")
    record = pipeline.wait(dropped.job_id)

    assert record.status == "failed" and record.error.code == "INPUT_NOT_FOUND", record.error
    assert record.error.message == (
        f"inputs.reference_voice: s3://{r.input_bucket}/{theirs_key} does not exist or this drop folder "
        "may not read it"
    )
    assert not [u for _, u in s3_requests()[start:] if quote(theirs_key) in u or theirs_key in u]
