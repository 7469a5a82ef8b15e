"""Labels on every output, on real media: the lite engine renders an avatar (its frames and sound
watermarked as they are encoded), ffmpeg re-encodes it the way a platform would, the detector
reads it back; c2pa-python signs the render and reads the credentials back, as `talkstack verify`
and finalize's signing step do."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import boto3
import numpy as np
import pytest
from moto import mock_aws
from PIL import Image
from typer.testing import CliRunner

from talkstack.cli import app
from talkstack.contract.record import JobRecord
from talkstack.contract.worker import OutputObject
from talkstack.engines.lite.avatar import LiteAvatarOptions, render_avatar
from talkstack.media.audio import read_audio, write_wav
from talkstack.media.video import iter_frames, probe_video
from talkstack.safety.credentials import Generation, read_credentials, sign_file, throwaway_signer
from talkstack.safety.watermark_audio import detect_audio
from talkstack.safety.watermark_video import VideoWatermarker, detect_frames
from talkstack.settings import get_provenance_settings
from talkstack.settings.provenance import PUBLIC_WATERMARK_KEY
from tests.conftest import PORTRAIT, transcode
from tests.support.steps import avatar_request

KEY = PUBLIC_WATERMARK_KEY
SECONDS = 4.0


def _render(tmp: Path, media: dict[str, Path], name: str) -> Path:
    clip = read_audio(media["speech"])
    speech = write_wav(tmp / f"{name}.wav", clip.samples[: int(SECONDS * clip.sample_rate)], clip.sample_rate)
    video = tmp / f"{name}.mp4"
    render_avatar(media["portrait"], speech, video, options=LiteAvatarOptions(max_side=256))
    return video


@pytest.fixture(scope="module")
def renders(media: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The same 4 s avatar rendered by the lite engine with the watermark and without it."""
    tmp = tmp_path_factory.mktemp("provenance")
    monkeypatch = pytest.MonkeyPatch()
    try:
        monkeypatch.setenv("TALKSTACK_WATERMARK", "true")
        get_provenance_settings.cache_clear()
        marked = _render(tmp, media, "marked")
        monkeypatch.setenv("TALKSTACK_WATERMARK", "false")
        get_provenance_settings.cache_clear()
        plain = _render(tmp, media, "plain")
    finally:
        monkeypatch.undo()
        get_provenance_settings.cache_clear()
    return {"marked": marked, "plain": plain}


def _video_score(path: Path, key: str = KEY) -> float:
    return detect_frames(iter_frames(path), key).score


def _audio_score(path: Path, key: str = KEY) -> float:
    clip = read_audio(path)
    return detect_audio(clip.samples, clip.sample_rate, key).score


def _bitrate(path: Path) -> int:
    import av

    with av.open(str(path)) as container:
        return container.streams.video[0].bit_rate


def test_the_render_is_marked_and_the_plain_render_is_not(renders):
    marked, plain = renders["marked"], renders["plain"]
    assert _video_score(marked) >= 6.0
    assert _video_score(plain) < 6.0
    # another key finds nothing in the marked render
    assert _video_score(marked, key="another operator's key") < 6.0
    # and the mark is invisible by the usual measure: PSNR of marked against unmarked frames ≥ 40 dB
    marker = VideoWatermarker(KEY)
    psnr = []
    for frame in iter_frames(plain):
        mse = np.mean((marker.apply(frame).astype(np.float64) - frame.astype(np.float64)) ** 2)
        psnr.append(10 * np.log10(255**2 / mse))
    assert np.median(psnr) >= 40.0


def test_the_video_mark_survives_half_the_bitrate_and_half_the_size(renders, tmp_path):
    for name, path in renders.items():
        half = _bitrate(path) // 2
        transcode(path, tmp_path / f"{name}-half.mp4", vcodec="libx264", video_bitrate=half, an=None)
        transcode(path, tmp_path / f"{name}-small.mp4", vcodec="libx264", vf="scale=iw/2:-2", an=None)
    assert _bitrate(tmp_path / "marked-half.mp4") < _bitrate(renders["marked"]) * 0.6
    assert probe_video(tmp_path / "marked-small.mp4").width == probe_video(renders["marked"]).width // 2
    assert _video_score(tmp_path / "marked-half.mp4") >= 6.0
    assert _video_score(tmp_path / "marked-small.mp4") >= 6.0
    assert _video_score(tmp_path / "plain-half.mp4") < 6.0
    assert _video_score(tmp_path / "plain-small.mp4") < 6.0


def test_the_audio_mark_survives_aac_at_half_the_bitrate(renders, tmp_path):
    # The render's sound is AAC at 128 kb/s; a platform re-encodes it at 64 kb/s
    for name, path in renders.items():
        transcode(path, tmp_path / f"{name}.m4a", vn=None, acodec="aac", audio_bitrate="64k")
    assert _audio_score(tmp_path / "marked.m4a") >= 6.0
    assert _audio_score(tmp_path / "plain.m4a") < 6.0


def test_signed_credentials_validate_and_name_the_model(renders, tmp_path):
    signed = tmp_path / "signed.mp4"
    generation = Generation(job_id="avatar-0123456789abcdef", models=["lite-avatar"], title="video.mp4")
    sign_file(renders["marked"], signed, generation, throwaway_signer())

    found = read_credentials(signed)
    # c2pa itself: the signature and the file's hashes check out ("Valid"); the test signer is on
    # no trust list, which is c2pa's one failure code (not "Trusted")
    assert found.found and found.validation_state == "Valid"
    assert found.failures == ["signingCredential.untrusted"]
    assert found.ai_generated and found.models == ["lite-avatar"]
    assert found.job_id == "avatar-0123456789abcdef" and found.generator.startswith("talkstack")
    assert found.signer == "talkstack test signer"
    # signing changed no frame: the watermark is still there
    assert _video_score(signed) >= 6.0
    assert read_credentials(renders["marked"]).found is False


def test_a_changed_file_fails_validation(renders, tmp_path):
    signed = sign_file(
        renders["plain"],
        tmp_path / "signed.mp4",
        Generation("job", ["lite-avatar"], "v.mp4"),
        throwaway_signer(),
    )
    data = bytearray(signed.read_bytes())
    data[-200] ^= 0xFF  # a byte of the media data, after the manifest
    tampered = tmp_path / "tampered.mp4"
    tampered.write_bytes(bytes(data))
    found = read_credentials(tampered)
    assert found.found and found.validation_state == "Invalid"
    assert any("mismatch" in code for code in found.failures), found.failures


def test_verify_reports_credentials_and_watermark(renders, tmp_path):
    runner = CliRunner()
    signed = sign_file(
        renders["marked"],
        tmp_path / "signed.mp4",
        Generation("job-7", ["lite-avatar"], "v.mp4"),
        throwaway_signer(),
    )
    done = runner.invoke(app, ["verify", str(signed), "--json"])
    assert done.exit_code == 0, done.output
    report = json.loads(done.output)
    assert report["credentials"]["validation_state"] == "Valid"
    assert report["credentials"]["models"] == ["lite-avatar"]
    assert report["watermark"]["video"]["detected"] and report["watermark"]["audio"]["detected"]
    # an unsigned, unmarked render: nothing found, its own exit status
    done = runner.invoke(app, ["verify", str(renders["plain"])])
    assert done.exit_code == 3, done.output
    assert "nothing found" in done.output


def test_finalize_signs_what_it_publishes(renders, monkeypatch):
    """pipeline/provenance.sign_output on moto's S3 and Secrets Manager: the operator's signer from
    the secret, the signed copy beside the worker's object, the models from the record."""
    from talkstack.pipeline import aws
    from talkstack.pipeline.provenance import TEST_SIGNER_WARNING, sign_output

    operator = throwaway_signer().model_copy()  # stands in for the operator's own chain
    with mock_aws():
        s3 = boto3.client("s3", region_name="us-east-1")
        s3.create_bucket(Bucket="work")
        secrets = boto3.client("secretsmanager", region_name="us-east-1")
        secrets.create_secret(Name="c2pa-signer", SecretString=operator.model_dump_json())
        monkeypatch.setattr(aws, "client", lambda service, region=None: secrets)
        aws.secrets_provider.cache_clear()
        monkeypatch.setenv("TALKSTACK_C2PA", "true")
        monkeypatch.setenv("TALKSTACK_C2PA_SECRET", "c2pa-signer")
        get_provenance_settings.cache_clear()
        try:
            s3.upload_file(str(renders["plain"]), "work", "work/job-1/avatar-1/video.mp4")
            record = JobRecord.new("job-1", avatar_request())
            obj = OutputObject(
                key="work/job-1/avatar-1/video.mp4",
                bytes=renders["plain"].stat().st_size,
                content_type="video/mp4",
            )
            warnings: list[str] = []
            signed = sign_output(s3, "work", record, "video", obj, warnings)
            thumbnail = OutputObject(
                key="work/job-1/avatar-1/thumbnail.jpg", bytes=1, content_type="image/jpeg"
            )
            assert sign_output(s3, "work", record, "thumbnail", thumbnail, warnings) == thumbnail
            # no secret named: the throwaway test signer, and the warning once however many outputs
            monkeypatch.setenv("TALKSTACK_C2PA_SECRET", "")
            get_provenance_settings.cache_clear()
            unconfigured: list[str] = []
            for _ in range(2):
                sign_output(s3, "work", record, "video", obj, unconfigured)
        finally:
            get_provenance_settings.cache_clear()
            aws.secrets_provider.cache_clear()
        assert signed.key == "work/job-1/avatar-1/signed/video.mp4" and warnings == []
        body = s3.get_object(Bucket="work", Key=signed.key)["Body"].read()
        assert len(body) == signed.bytes
    path = renders["plain"].with_name("from-finalize.mp4")
    path.write_bytes(body)
    found = read_credentials(path)
    assert found.validation_state == "Valid" and found.job_id == "job-1"
    assert found.models == ["lite-avatar"]
    assert unconfigured == [TEST_SIGNER_WARNING]


def test_a_stitched_long_avatar_is_marked_across_its_joins(renders, tmp_path):
    """The stitch step re-encodes the joined chunks: it marks the joined frames itself (the chunks'
    own marks do not line up across the joins). Chunks cut from the unmarked render, so only the
    stitch's mark can be found."""
    from talkstack.media.segments import Chunk
    from talkstack.media.stitch import stitch_chunks
    from talkstack.safety.watermark import frame_marker

    plain = renders["plain"]
    chunks = [Chunk(0, 0.0, 2.0, 0.0, 2.16, True), Chunk(1, 2.0, 4.0, 1.84, 4.0, True)]
    videos = [
        transcode(
            plain, tmp_path / f"chunk{c.index}.mp4", ss=c.render_start_s, t=c.render_end_s - c.render_start_s
        )
        for c in chunks
    ]
    speech = transcode(plain, tmp_path / "speech.wav", vn=None)
    stitched = {}
    for name, mark in (("marked", frame_marker()), ("plain", None)):
        stitched[name] = tmp_path / f"{name}.mp4"
        stitch_chunks(chunks, videos, speech, stitched[name], fps=25, mark=mark)
    assert _video_score(stitched["marked"]) >= 6.0
    assert _video_score(stitched["plain"]) < 6.0


def test_the_mark_is_the_same_with_or_without_opencv(monkeypatch):
    # The voice worker images have no OpenCV: the NumPy path must add exactly what cv2's does,
    # saturating at 0 and 255 (a frame with black and white bands).
    import talkstack.safety.watermark_video as watermark_video

    frames = np.random.default_rng(1).integers(0, 256, (12, 48, 64, 3), dtype=np.uint8)
    frames[:, :4], frames[:, -4:] = 0, 255
    marker = watermark_video.VideoWatermarker("k")
    with_cv2 = [marker.apply(f) for f in frames]
    monkeypatch.setattr(watermark_video, "cv2", None)
    marker = watermark_video.VideoWatermarker("k")
    without = [marker.apply(f) for f in frames]
    assert all((a == b).all() for a, b in zip(with_cv2, without, strict=True))
    assert any((a != f).any() for a, f in zip(without, frames, strict=True))  # it did mark them
    # Larger frames are marked through a subsampled activity mask, upsampled by OpenCV or Pillow:
    # their bilinear filters round differently, so the two paths agree within a level.
    portrait = np.asarray(Image.open(PORTRAIT).convert("RGB").resize((854, 480)))
    monkeypatch.undo()
    with_cv2 = watermark_video.VideoWatermarker("k").apply(portrait)
    monkeypatch.setattr(watermark_video, "cv2", None)
    without = watermark_video.VideoWatermarker("k").apply(portrait)
    assert np.abs(with_cv2.astype(int) - without).max() <= 1
    assert (without != portrait).mean() > 0.3


def test_the_mark_stays_off_flat_colour_and_on_the_portrait(media):
    """The mark follows the picture's activity: a title card's flat colour (where a smooth change of
    a few levels shows as blocky mottling once encoded) is left within a level of itself, PSNR ≥ 50
    dB, while the textured portrait carries the mark and a run of its frames is detected."""
    from PIL import ImageDraw

    card = Image.new("RGB", (1280, 720), (38, 76, 160))
    ImageDraw.Draw(card).rectangle((440, 320, 840, 400), fill=(250, 250, 250))  # the title's box
    card = np.asarray(card)
    flat = np.ones(card.shape[:2], bool)
    flat[320 - 48 : 400 + 48, 440 - 48 : 840 + 48] = False  # away from the title's edges
    marker = VideoWatermarker(KEY)
    for _ in range(2 * 12):  # a run of each sign
        delta = marker.apply(card).astype(np.float64) - card
        assert np.abs(delta[flat]).max() <= 1
        mse = np.mean(delta[flat] ** 2)
        assert mse == 0 or 10 * np.log10(255**2 / mse) >= 50.0

    rng = np.random.default_rng(0)
    portrait = np.asarray(Image.open(media["portrait"]).convert("RGB").resize((640, 640)))
    marker = VideoWatermarker(KEY)
    frames = []
    for _ in range(48):  # a still portrait with a little sensor noise, as a camera would give
        noisy = np.clip(portrait + rng.normal(0, 2, portrait.shape), 0, 255).astype(np.uint8)
        frames.append(marker.apply(noisy))
        assert (frames[-1] != noisy).mean() > 0.3  # the mark covers the textured picture
    assert detect_frames(frames, KEY).detected
    assert not detect_frames(frames, "another operator's key").detected


def test_unmarked_turns_both_marks_off_and_only_inside_it():
    from talkstack.safety.watermark import frame_marker, mark_audio, unmarked

    # a textured frame: flat colour is not marked at all (the mark follows the picture's activity)
    frame = np.random.default_rng(0).integers(0, 256, (32, 32, 3), dtype=np.uint8)
    speech = np.random.default_rng(0).normal(0, 0.1, 16_000).astype(np.float32)
    with unmarked():
        assert (frame_marker()(frame) == frame).all()
        assert mark_audio(speech, 16_000) is speech
    assert (frame_marker()(frame) != frame).any()
    assert not np.array_equal(mark_audio(speech, 16_000), speech)


TEXT_AVATAR = {"image": "s3://inputs-bucket/p.png", "text": "Hello there."}


@pytest.mark.parametrize(
    ("changes", "step", "marked"),
    [
        ({}, "avatar", True),  # an avatar from uploaded speech: its sound and frames, once
        ({}, "avatar#2", False),  # a chunk: the stitch step marks the joined video
        ({}, "stitch", True),
        ({"inputs": TEXT_AVATAR}, "voice", False),  # its speech: the avatar step marks its sound
        ({"inputs": TEXT_AVATAR}, "avatar", True),
    ],
)
def test_dispatch_marks_only_the_render_that_is_published(changes, step, marked):
    from talkstack.contract.parse import parse_job_request
    from talkstack.contract.worker import StepAddress
    from talkstack.pipeline.dispatch import watermarks

    assert watermarks(avatar_request(**changes), StepAddress.parse(step)) is marked
    voice = parse_job_request({"task": "voice", "inputs": {"text": "Hello there."}})
    assert watermarks(voice, StepAddress.parse("voice")) is True


def test_the_runner_renders_a_task_that_is_not_published_unmarked(tmp_path):
    """A chunk (or a text-driven avatar's speech) rendered marked and then marked again by the step
    that joins or muxes it would carry the mark twice: twice as strong where they line up."""
    import httpx

    from talkstack.contract.worker import AvatarTask, Markers, OutputUrl
    from talkstack.engines.base import RenderResult
    from talkstack.safety.watermark import watermark_key
    from talkstack.workers.runner import run_task

    seen: list[str | None] = []

    def engine(task, inputs, outdir, progress):
        seen.append(watermark_key())
        video = outdir / "video.mp4"
        video.write_bytes(b"mp4")
        return {"video": video}, RenderResult(output=video, bytes=3, duration_s=1.0)

    def s3(request: httpx.Request) -> httpx.Response:
        return httpx.Response(404 if request.url.path.endswith("cancel.json") else 200)

    def put(name: str) -> OutputUrl:
        return OutputUrl(url=f"https://s3.test/{name}", key=name, content_type="application/json")

    for watermark in (True, False):
        task = AvatarTask(
            job_id="job-1",
            attempt_id="avatar-c1-1-abcdef0123",
            attempt=1,
            model="multitalk",
            outputs={"video": put("video.mp4")},
            markers=Markers(progress=put("p.json"), result=put("r.json"), error=put("e.json")),
            heartbeat_interval_s=10,
            deadline=datetime.now(UTC) + timedelta(hours=1),
            watermark=watermark,
        )
        with httpx.Client(transport=httpx.MockTransport(s3)) as client:
            assert run_task(task, client, step=engine)
    assert seen == [KEY, None]
    assert get_provenance_settings().watermark  # the worker's setting is on throughout
