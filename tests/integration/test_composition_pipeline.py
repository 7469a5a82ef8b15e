"""A composition through the whole local stack: the real state machine's Scenes map (the avatar
scene's voice, avatar and matte steps on the worker pool), the compose step, and finalize publishing
the video with its captions, animated preview and a still per scene. Real media throughout: the
bundled portrait, the lite voice and avatar, the CPU matte and compositor.

Two scenes: a text-driven lite avatar cut out over a green background with a lower third, a
crossfade, then a title card. The video lasts the two scenes less the crossfade (±1 frame)."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest

from talkstack.contract.record import JobRecord
from talkstack.contract.worker import ResultMarker, StepAddress
from talkstack.media.video import probe_video

pytestmark = pytest.mark.slow

CROSSFADE_S, TITLE_S, FPS = 0.5, 2.0, 25


def manifest(pipeline) -> dict:
    return {
        "task": "composition",
        "scenes": [
            {
                "source": {
                    "type": "avatar",
                    "inputs": {"image": "portrait.png", "text": "Hello from the first scene."},
                },
                "layout": {"type": "background", "position": "center", "scale": 0.9, "cutout": True},
                "background": {"type": "colour", "colour": "#00B140"},
                "overlays": [{"type": "lower_third", "text": "Grace Hopper", "secondary": "Host"}],
                "transition": {"type": "crossfade", "duration_s": CROSSFADE_S},
            },
            {
                "source": {"type": "title", "title": "Thank you", "subtitle": "talkstack"},
                "duration_s": TITLE_S,
            },
        ],
        "options": {"aspect": "16:9", "resolution": "720p", "fps": FPS},
        "preview": True,  # 360p: quick on the test runner
        "notify": {"webhook_url": pipeline.hooks.url},
    }


def test_a_two_scene_composition_is_rendered_composed_and_published(pipeline, media, tmp_path: Path):
    name = f"film-{uuid.uuid4().hex[:8]}"
    dropped = pipeline.drop(manifest(pipeline), {"portrait.png": media["portrait"]}, name)

    record: JobRecord = pipeline.wait(dropped.job_id, timeout_s=300)

    assert record.status == "completed", record.error
    job_id = record.job_id
    # one step record per kind, the scene's steps closed by compose
    assert [s.name for s in record.steps] == ["moderate", "voice", "avatar", "matte", "compose", "finalize"]
    assert all(s.status == "completed" for s in record.steps)
    # every output of the compose step, published beside the video under predictable names
    keys = set(pipeline.keys(pipeline.r.output_bucket, f"{job_id}/"))
    assert keys == {
        f"{job_id}/video.mp4",
        f"{job_id}/thumbnail.jpg",
        f"{job_id}/video.preview.webp",
        f"{job_id}/video.srt",
        f"{job_id}/video.vtt",
        f"{job_id}/video.scene-1.jpg",
        f"{job_id}/video.scene-2.jpg",
        f"{job_id}/result.json",
    }
    assert record.result is not None and record.result.preview is True
    kinds = sorted(o.kind for o in record.result.outputs)
    assert kinds == sorted(
        ["video", "thumbnail", "preview", "captions", "captions", "scene_thumbnail", "scene_thumbnail"]
    )

    # the video: 16:9 at the preview's 360p, both scenes less the crossfade, with sound
    local = tmp_path / "video.mp4"
    pipeline.s3.download_file(pipeline.r.output_bucket, f"{job_id}/video.mp4", str(local))
    info = probe_video(local)
    assert (info.width, info.height) == (640, 360) and info.audio is not None
    avatar = pipeline.store.get_step_result(job_id, StepAddress(step="avatar", scene=0), ResultMarker)
    assert avatar is not None and avatar.duration_s
    expected = avatar.duration_s + TITLE_S - CROSSFADE_S
    assert abs(info.duration_s - expected) <= 1 / FPS + 1e-3, (info.duration_s, expected)

    # captions: the scene's words, as cues
    srt = pipeline.s3.get_object(Bucket=pipeline.r.output_bucket, Key=f"{job_id}/video.srt")["Body"].read()
    assert b"-->" in srt and b"hello" in srt.lower() and b"scene" in srt.lower()
    vtt = pipeline.s3.get_object(Bucket=pipeline.r.output_bucket, Key=f"{job_id}/video.vtt")["Body"].read()
    assert vtt.startswith(b"WEBVTT")

    # progress events name the scene that moved the job
    progress = pipeline.sns.for_job(job_id, "job.progress")
    assert any(event.get("scene") == 0 for event in progress), progress
    assert all(event.get("scene") in (0, None) for event in progress)
