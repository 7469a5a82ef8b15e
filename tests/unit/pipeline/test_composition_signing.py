"""Content credentials on a composition's alpha files: c2pa embeds a manifest in a ProRes 4444 MOV
(checked by reading it back), and refuses WebM, which is then published unsigned with a warning.
Real files made with ffmpeg, signed and read by the c2pa library."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytest

from talkstack.contract.record import JobRecord
from talkstack.contract.worker import OutputObject
from talkstack.media.ffmpeg import ffmpeg_exe
from talkstack.pipeline.provenance import WEBM_WARNING, sign_output
from talkstack.safety.credentials import read_credentials
from talkstack.settings import get_provenance_settings
from tests.support.steps import WORK, avatar_request


@pytest.fixture
def signing(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("TALKSTACK_C2PA", "true")
    get_provenance_settings.cache_clear()
    yield
    get_provenance_settings.cache_clear()


def alpha_file(tmp_path: Path, name: str, codec: list[str]) -> Path:
    path = tmp_path / name
    source = ["-f", "lavfi", "-i", "testsrc=size=64x64:rate=10:d=0.5"]
    subprocess.run([ffmpeg_exe(), "-y", "-loglevel", "error", *source, *codec, str(path)], check=True)
    return path


def put(s3: Any, path: Path, content_type: str) -> OutputObject:
    key = f"work/job-1/compose-1-x/{path.name}"
    s3.put_object(Bucket=WORK, Key=key, Body=path.read_bytes(), ContentType=content_type)
    return OutputObject(key=key, bytes=path.stat().st_size, content_type=content_type)


def test_the_mov_is_signed_and_the_webm_is_published_unsigned_with_a_warning(s3, signing, tmp_path):
    record = JobRecord.new("job-1", avatar_request())
    record.start_step("compose", model="compose")
    mov = put(
        s3,
        alpha_file(
            tmp_path, "video.mov", ["-c:v", "prores_ks", "-profile:v", "4444", "-pix_fmt", "yuva444p10le"]
        ),
        "video/quicktime",
    )
    webm = put(
        s3, alpha_file(tmp_path, "video.webm", ["-c:v", "libvpx-vp9", "-pix_fmt", "yuva420p"]), "video/webm"
    )
    warnings: list[str] = []

    signed = sign_output(s3, WORK, record, "video_mov", mov, warnings)
    unsigned = sign_output(s3, WORK, record, "video_webm", webm, warnings)

    assert signed.key != mov.key and signed.key.endswith("/signed/video.mov")
    local = tmp_path / "signed.mov"
    s3.download_file(WORK, signed.key, str(local))
    credentials = read_credentials(local)
    assert credentials.found and credentials.job_id == "job-1" and "compose" in credentials.models
    assert unsigned == webm
    assert WEBM_WARNING in warnings
