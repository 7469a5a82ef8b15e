"""`talkstack download JOB [-o DIR]` on moto's S3: a completed job's outputs land whole under their
key's names, in out/<job id>/ by default; a failed, running or unknown job is refused with its code;
an interrupted download leaves neither a partial file nor a damaged earlier one. The job record
comes from a stand-in for the stack's jobs table."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest
from typer.testing import CliRunner

from talkstack.cli import app
from talkstack.cli import stack as stack_cli
from talkstack.cli.drop import download_outputs
from talkstack.contract.record import JobError, JobRecord, JobResult, OutputFile
from talkstack.errors import ErrorCode, TalkstackError
from tests.support.steps import avatar_request

runner = CliRunner()
VIDEO = bytes(range(256)) * 4096 + b"tail"  # 1 MiB and a bit: more than one chunk
POSTER = b"\xff\xd8 a poster"


def completed(bucket: str) -> JobRecord:
    record = JobRecord.new("job-1", avatar_request())
    record.start_step("avatar")
    record.finish_step("avatar")
    outputs = [
        OutputFile(kind=kind, bucket=bucket, key=f"job-1/{name}", content_type=mime, bytes=len(body))
        for kind, name, mime, body in (
            ("video", "video.mp4", "video/mp4", VIDEO),
            ("thumbnail", "poster.jpg", "image/jpeg", POSTER),
        )
    ]
    return record.mark_completed(JobResult(outputs=outputs))


@pytest.fixture
def stack(monkeypatch, moto_aws):
    """The stack's jobs table played by one dict; its S3 is moto's, holding job-1's outputs."""
    records: dict[str, JobRecord] = {}
    monkeypatch.setattr(stack_cli, "_connect", lambda resources: SimpleNamespace(get=records.get))
    moto_aws["s3"].put_object(Bucket=moto_aws["bucket"], Key="job-1/video.mp4", Body=VIDEO)
    moto_aws["s3"].put_object(Bucket=moto_aws["bucket"], Key="job-1/poster.jpg", Body=POSTER)
    return SimpleNamespace(records=records, **moto_aws)


def test_download_writes_each_output_and_prints_it(stack, tmp_path, monkeypatch):
    stack.records["job-1"] = completed(stack.bucket)
    monkeypatch.chdir(tmp_path)

    result = runner.invoke(app, ["download", "job-1"])

    assert result.exit_code == 0, result.output
    folder = Path("out/job-1")
    assert (folder / "video.mp4").read_bytes() == VIDEO
    assert (folder / "poster.jpg").read_bytes() == POSTER
    assert sorted(p.name for p in folder.iterdir()) == ["poster.jpg", "video.mp4"]
    assert [line.split()[:2] for line in result.output.splitlines()] == [
        ["wrote", "out/job-1/video.mp4"],
        ["wrote", "out/job-1/poster.jpg"],
    ]

    elsewhere = runner.invoke(app, ["download", "job-1", "-o", str(tmp_path / "mine")])
    assert elsewhere.exit_code == 0 and (tmp_path / "mine" / "video.mp4").read_bytes() == VIDEO


def test_a_job_without_outputs_is_refused_with_its_status_and_code(stack, tmp_path):
    failed = JobRecord.new("job-2", avatar_request()).mark_failed(
        JobError(code=ErrorCode.NO_FACE_DETECTED, message="no face in the photo")
    )
    running = JobRecord.new("job-3", avatar_request())
    running.start_step("avatar")
    stack.records.update({"job-2": failed, "job-3": running})
    target = tmp_path / "out"

    cases = {
        "job-2": "error [NO_FACE_DETECTED]: job job-2 failed: no face in the photo; it has no outputs",
        "job-3": "error [CONFLICT]: job job-3 is running (0%); download it once it has completed",
        "nope": "error [NOT_FOUND]: no job 'nope' in ",
    }
    for job_id, message in cases.items():
        result = runner.invoke(app, ["download", job_id, "-o", str(target)])
        assert result.exit_code == 2
        assert result.output.startswith(message) and len(result.output.splitlines()) == 1, result.output
    assert not target.exists()


class Interrupted:
    """moto's S3, except that the video's body breaks off after its first chunk."""

    def __init__(self, s3):
        self.s3 = s3

    def get_object(self, **kwargs):
        response = self.s3.get_object(**kwargs)
        if kwargs["Key"].endswith(".mp4"):
            body = response["Body"]

            def iter_chunks(size):
                yield body.read(size)
                raise KeyboardInterrupt

            body.iter_chunks = iter_chunks
        return response


def test_an_interrupted_download_leaves_no_partial_file(stack, tmp_path):
    folder = tmp_path / "out"
    folder.mkdir()
    (folder / "video.mp4").write_bytes(b"the earlier download")

    with pytest.raises(KeyboardInterrupt):
        download_outputs(Interrupted(stack.s3), completed(stack.bucket), folder)

    assert [p.name for p in folder.iterdir()] == ["video.mp4"]
    assert (folder / "video.mp4").read_bytes() == b"the earlier download"


def test_download_outputs_refuses_an_unfinished_record_without_touching_s3(tmp_path):
    with pytest.raises(TalkstackError) as caught:
        download_outputs(None, JobRecord.new("job-4", avatar_request()), tmp_path / "x")
    assert caught.value.code == ErrorCode.CONFLICT and "queued" in caught.value.message
    assert not (tmp_path / "x").exists()
