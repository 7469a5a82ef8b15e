"""The finished-video guarantees, measured on what the local pipeline publishes: each shipped template
generated over REST with its example variables and fully rendered (lite voice and avatar, CPU matte
and compositor on the worker pool), a presenter cut out over green, and a transparent render.

Expectations are computed independently of the compositor where they can be (scene lengths from the
avatar steps' result markers, caption times from the voice steps' words.json, the audio and pixels
decoded here with ffmpeg); where a thing must be placed, the compositor's own layout/text functions
say WHERE, and the pixels are measured here."""

from __future__ import annotations

import json
import re
import subprocess
import uuid
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import talkstack.templates as templates
from talkstack.compose.backgrounds import Backdrop
from talkstack.compose.layout import Box, fit, place
from talkstack.compose.text import OverlayPainter, title_card
from talkstack.contract.captions import SpeechTimings
from talkstack.contract.composition import (
    DEFAULT_STILL_SECONDS,
    AvatarSource,
    CompositionRequest,
    canvas_size,
)
from talkstack.contract.record import JobRecord
from talkstack.contract.worker import ResultMarker, StepAddress
from talkstack.engines.lite.face import detect_faces
from talkstack.media.alpha import read_alpha_frames, read_mask_frames
from talkstack.media.ffmpeg import ffmpeg_exe
from talkstack.media.video import iter_frames, probe_video
from tests.integration.test_api import Api

pytestmark = pytest.mark.slow

TEMPLATES = ("social-ad", "product-demo", "news", "tutorial")
RATE = 16_000
WINDOW_S = 0.05
FLOOR_DBFS = -60.0
"""Audible: music under the voice (ducked) and speech measure well above this; the silent title card
of a template without music measures below it (checked, so the floor means something)."""
CAPTION_TOLERANCE_S = 0.2
HEARTBEAT_S = 30
"""The suite's 4 s heartbeat (for quick timeout tests) is missed by workers of four concurrent
full renders on a loaded 2-core runner; these jobs are about output, not timeouts."""
DIFFERS = 40
"""A pixel differs from the background-only frame when a channel is off by more than this: above
H.264's noise on flat areas and the invisible watermark's small changes."""


@dataclass
class Rendered:
    template: str
    record: JobRecord
    request: CompositionRequest
    video: Path
    srt: str | None


@pytest.fixture(scope="module")
def rendered(pipeline, tmp_path_factory) -> dict[str, Rendered]:
    """The four templates, submitted together (the worker pool renders them side by side)."""
    api = Api(pipeline.api_url, pipeline.api_key("enterprise", "templates-render"))
    jobs: dict[str, str] = {}
    with pipeline.configured(heartbeat_seconds=str(HEARTBEAT_S)):
        for template in TEMPLATES:
            example = templates.bundled_templates()[template].example
            answer = api.post(
                f"/v1/templates/{template}/generate", json={"variables": example, "preview": False}
            )
            assert answer.status_code == 202, answer.text
            jobs[template] = answer.json()["job_id"]
        records = {template: pipeline.wait(job_id, timeout_s=900) for template, job_id in jobs.items()}
    out = tmp_path_factory.mktemp("templates")
    results: dict[str, Rendered] = {}
    for template, record in records.items():
        assert record.status == "completed", (template, record.error, failure_events(pipeline, record.job_id))
        assert record.result is not None
        published = {o.kind: o.key for o in record.result.outputs if o.kind in ("video", "captions")}
        video = out / f"{template}.mp4"
        pipeline.s3.download_file(pipeline.r.output_bucket, published["video"], str(video))
        srt = None
        for output in record.result.outputs:
            if output.key.endswith(".srt"):
                body = pipeline.s3.get_object(Bucket=pipeline.r.output_bucket, Key=output.key)["Body"]
                srt = body.read().decode()
        request = record.request
        assert isinstance(request, CompositionRequest) and not request.preview
        results[template] = Rendered(template, record, request, video, srt)
    return results


def failure_events(pipeline, job_id: str) -> list[str]:
    """The execution's failure events, to say why a render failed."""
    arn = pipeline.executions(job_id)[0]["executionArn"]
    events = pipeline.sfn.get_execution_history(executionArn=arn, maxResults=1000)["events"]
    return [json.dumps(e, default=str)[:2000] for e in events if "Fail" in e["type"]]


# --- what the video should be, computed without the compositor ---------------------------------------


def scene_spans(pipeline, r: Rendered) -> list[tuple[float, float]]:
    """(start, length) of each scene: avatar scenes last their avatar step's render (cut to
    duration_s), stills and title cards their duration_s or the default; a transition into the next
    scene overlaps the two by its length."""
    spans, start = [], 0.0
    for i, scene in enumerate(r.request.scenes):
        if isinstance(scene.source, AvatarSource):
            marker = avatar_marker(pipeline, r, i)
            length = marker.duration_s
            assert length
            if scene.duration_s:
                length = min(length, scene.duration_s)
        else:
            length = scene.duration_s or DEFAULT_STILL_SECONDS
        spans.append((start, length))
        start += length - scene.transition.overlap_s
    return spans


def avatar_marker(pipeline, r: Rendered, scene: int) -> ResultMarker:
    marker = pipeline.store.get_step_result(
        r.record.job_id, StepAddress(step="avatar", scene=scene), ResultMarker
    )
    assert marker is not None
    return marker


def scene_words(pipeline, r: Rendered, scene: int) -> SpeechTimings:
    marker = pipeline.store.get_step_result(
        r.record.job_id, StepAddress(step="voice", scene=scene), ResultMarker
    )
    assert marker is not None and "words" in marker.outputs, marker
    body = pipeline.s3.get_object(Bucket=pipeline.r.work_bucket, Key=marker.outputs["words"].key)["Body"]
    return SpeechTimings.model_validate_json(body.read())


def decode_audio(video: Path) -> np.ndarray:
    raw = subprocess.run(
        [
            *(ffmpeg_exe(), "-v", "error", "-i", str(video), "-map", "0:a:0", "-ac", "1"),
            *("-ar", str(RATE), "-f", "f32le", "pipe:"),
        ],
        check=True,
        capture_output=True,
    ).stdout
    return np.frombuffer(raw, np.float32)


def level_dbfs(samples: np.ndarray, start_s: float, end_s: float) -> float:
    part = samples[max(0, int(start_s * RATE)) : int(end_s * RATE)]
    rms = float(np.sqrt(np.mean(np.square(part.astype(np.float64))))) if part.size else 0.0
    return 20 * np.log10(max(rms, 1e-9))


def frame_at(video: Path, t: float, width: int, height: int) -> np.ndarray:
    raw = subprocess.run(
        [
            *(ffmpeg_exe(), "-v", "error", "-ss", f"{t:.3f}", "-i", str(video)),
            *("-frames:v", "1", "-f", "rawvideo", "-pix_fmt", "rgb24", "pipe:"),
        ],
        check=True,
        capture_output=True,
    ).stdout
    return np.frombuffer(raw, np.uint8)[: width * height * 3].reshape(height, width, 3)


SRT_TIME = r"(\d+):(\d+):(\d+),(\d+)"


def parse_srt(text: str) -> list[tuple[float, float, list[str]]]:
    cues = []
    for block in text.strip().split("\n\n"):
        lines = block.strip().splitlines()
        match = re.match(rf"{SRT_TIME} --> {SRT_TIME}", lines[1])
        assert match, block
        n = [int(g) for g in match.groups()]
        start = n[0] * 3600 + n[1] * 60 + n[2] + n[3] / 1000
        end = n[4] * 3600 + n[5] * 60 + n[6] + n[7] / 1000
        cues.append((start, end, " ".join(lines[2:]).split()))
    return cues


def token(word: str) -> str:
    return re.sub(r"\W", "", word.lower())


# --- 1. each shipped template ------------------------------------------------------------------------


@pytest.mark.parametrize("template", TEMPLATES)
def test_a_shipped_template_renders_its_size_length_sound_captions_and_text(
    pipeline, rendered, template, tmp_path
):
    r = rendered[template]
    request, fps = r.request, r.request.options.fps
    info = probe_video(r.video)

    # size and aspect: the template's own
    document = templates.bundled_templates()[template]
    width, height = canvas_size(document.aspect, document.resolution)
    assert (info.width, info.height) == (width, height)
    across, down = (int(p) for p in document.aspect.split(":"))
    assert abs(info.width / info.height - across / down) < 0.01

    # length: the scenes less the transition overlaps, ±1 frame
    spans = scene_spans(pipeline, r)
    expected = spans[-1][0] + spans[-1][1]
    print(f"{template}: {info.duration_s:.3f} s, expected {expected:.3f} s; scenes {spans}")
    assert abs(info.duration_s - expected) <= 1 / fps + 1e-3, (info.duration_s, expected)

    # sound: covering the whole video ...
    assert info.audio is not None
    samples = decode_audio(r.video)
    assert len(samples) / RATE >= info.duration_s - 1 / fps, (len(samples) / RATE, info.duration_s)
    # ... every spoken word audible where the timeline puts it (the words either side of a boundary
    # included: none is dropped or cut by a transition) ...
    speaking = [i for i, s in enumerate(request.scenes) if isinstance(s.source, AvatarSource)]
    words: list[tuple[float, float, str]] = []
    for i in speaking:
        start, length = spans[i]
        for w in scene_words(pipeline, r, i).words:
            if w.start_s < length:
                words.append((w.start_s + start, min(w.end_s, length) + start, w.word))
    quiet = [
        (w, round(level_dbfs(samples, s, e), 1))
        for s, e, w in words
        if level_dbfs(samples, s, e) < FLOOR_DBFS
    ]
    assert not quiet, quiet
    # ... and where music runs under everything, no drop-out across any scene boundary: every
    # 50 ms window from 0.5 s before a transition starts to 0.5 s after it ends is above the floor.
    # Without music, a title card is silent: check that it measures below the floor.
    if request.options.music is not None:
        worst = 0.0
        for i in range(len(spans) - 1):
            begin, end = spans[i + 1][0], spans[i][0] + spans[i][1]
            t = max(0.0, begin - 0.5)
            while t + WINDOW_S <= min(info.duration_s, end + 0.5):
                worst = min(worst, level_dbfs(samples, t, t + WINDOW_S))
                t += WINDOW_S
        print(f"{template}: quietest 50 ms around the boundaries {worst:.1f} dBFS")
        assert worst > FLOOR_DBFS, worst
    else:
        cards = [i for i, s in enumerate(request.scenes) if not isinstance(s.source, AvatarSource)]
        for i in cards:
            start, length = spans[i]
            silent = level_dbfs(samples, start + 0.2, start + length - request.scenes[i].transition.overlap_s)
            print(f"{template}: silent card {i} at {silent:.1f} dBFS")
            assert silent < FLOOR_DBFS - 10, silent

    # captions: every cue starts and ends with its words (their timings shifted to the scene's start)
    if request.options.captions.sidecar and speaking:
        assert r.srt is not None
        cues = parse_srt(r.srt)
        assert sum(len(c[2]) for c in cues) == len(words), (cues, words)
        cursor, worst = 0, 0.0
        for start, end, text in cues:
            mine = words[cursor : cursor + len(text)]
            cursor += len(text)
            assert [token(w) for w in text] == [token(w[2]) for w in mine], (text, mine)
            worst = max(worst, abs(start - mine[0][0]), abs(end - mine[-1][1]))
        print(f"{template}: {len(cues)} cues, worst offset {worst:.3f} s")
        assert worst <= CAPTION_TOLERANCE_S, worst

    # a text overlay where the layout puts it
    box, t, background, region = overlay_case(pipeline, r, spans, width, height)
    frame = frame_at(r.video, t, width, height).astype(np.int16)
    Image.fromarray(frame.astype(np.uint8)).save(tmp_path / f"{template}.png")  # to look at
    differs = np.abs(frame - background.astype(np.int16)).max(axis=2) > DIFFERS
    differs &= region
    inside = np.zeros_like(differs)
    pad = 3  # the shadow's blur and chroma subsampling reach a pixel or two past the sprite
    inside[max(0, box.y - pad) : box.bottom + pad, max(0, box.x - pad) : box.right + pad] = True
    total, within = int(differs.sum()), int((differs & inside).sum())
    share = within / max(1, total)
    coverage = within / (box.w * box.h)
    print(f"{template}: {total} differing pixels, {share:.4f} inside the box, covering {coverage:.3f} of it")
    assert share >= 0.99, (share, total)
    assert coverage >= 0.05, coverage


def overlay_case(pipeline, r: Rendered, spans, width: int, height: int):
    """(box, time, background-only frame, region compared) for the overlay checked in each template:
    the title cards of news and tutorial (nothing else on them), the headline of the social ad and
    the bullets of the product demo (compared above / left of the presenter's box)."""
    scenes = r.request.scenes
    region = np.ones((height, width), bool)
    if r.template in ("news", "tutorial"):
        scene = scenes[0]
        sprite = title_card(scene.source.title, scene.source.subtitle, width, height)
        t = spans[0][1] / 2
        return sprite.box, t, backdrop(scene.background, width, height), region
    index = 0 if r.template == "social-ad" else 1
    scene = scenes[index]
    start, length = spans[index]
    painter = OverlayPainter(scene.overlays, width, height, length)
    shown = len(scene.overlays[0].items or []) if scene.overlays[0].type == "bullets" else 0
    box = painter.sprite(0, shown).box
    t = start + length - scene.transition.overlap_s - 0.3  # every bullet shown, before the transition
    marker = avatar_marker(pipeline, r, index)
    person = place(scene.layout, width, height, marker.width, marker.height, cutout=scene.cutout).box
    if r.template == "social-ad":
        region[person.y :, :] = False  # the presenter and the burnt-in captions are below
    else:
        region[:, person.x :] = False
    return box, t, backdrop(scene.background, width, height), region


def backdrop(background, width: int, height: int) -> np.ndarray:
    """The scene's background alone, drawn by the compositor's own Backdrop from the bundled file."""
    media = None
    if background.type == "image":
        media = templates.asset_path(
            str(getattr(background.media, "key", background.media)).rsplit("/", 1)[-1]
        )
    return Backdrop(background, width, height, media).frame(0.0)


# --- 2 and 3. a cut-out presenter over green, and transparent output --------------------------------


GREEN = np.array([0, 255, 0])


def cutout_manifest(layout: dict, transparent: bool) -> dict:
    return {
        "task": "composition",
        "scenes": [
            {
                "source": {"type": "avatar", "inputs": {"image": "portrait.png", "text": "Hello there."}},
                "layout": layout,
                "background": {"type": "colour", "colour": "#00FF00"},
            }
        ],
        "options": {
            "aspect": "1:1",
            "resolution": "720p",
            "fps": 25,
            "captions": {"sidecar": False, "burn_in": "none"},
            "transparent": transparent,
        },
    }


@pytest.fixture(scope="module")
def cutout(pipeline, media, tmp_path_factory):
    """Two one-scene jobs rendered side by side: the portrait cut out over green filling the canvas
    (`full`), and cut out standing in the middle (`background`, so the corners are clear of the
    person) with transparent output."""
    manifests = {
        "green": cutout_manifest({"type": "full", "cutout": True}, transparent=False),
        "clear": cutout_manifest(
            {"type": "background", "position": "center", "scale": 0.7, "cutout": True}, transparent=True
        ),
    }
    with pipeline.configured(heartbeat_seconds=str(HEARTBEAT_S)):
        dropped = {
            kind: pipeline.drop(m, {"portrait.png": media["portrait"]}, f"{kind}-{uuid.uuid4().hex[:8]}")
            for kind, m in manifests.items()
        }
        records = {kind: pipeline.wait(d.job_id, timeout_s=600) for kind, d in dropped.items()}
    out = tmp_path_factory.mktemp("cutout")
    files: dict[str, Path] = {}
    for kind, record in records.items():
        assert record.status == "completed", (record.error, failure_events(pipeline, record.job_id))
        keys = pipeline.keys(pipeline.r.output_bucket, f"{record.job_id}/")
        names = ("video.mp4", "video.webm", "video.mov") if kind == "clear" else ("video.mp4",)
        for name in names:
            assert f"{record.job_id}/{name}" in keys, keys
            files[f"{kind}/{name}"] = out / f"{kind}-{name}"
            pipeline.s3.download_file(
                pipeline.r.output_bucket, f"{record.job_id}/{name}", str(files[f"{kind}/{name}"])
            )
    green = records["green"]
    matte = pipeline.store.get_step_result(green.job_id, StepAddress(step="matte", scene=0), ResultMarker)
    avatar = pipeline.store.get_step_result(green.job_id, StepAddress(step="avatar", scene=0), ResultMarker)
    assert matte is not None and avatar is not None
    files["mask"] = out / "mask.mp4"
    pipeline.s3.download_file(pipeline.r.work_bucket, matte.outputs["mask"].key, str(files["mask"]))
    return green, files, avatar


def central_face_box(frame: np.ndarray) -> Box:
    """The inner 60 % of the face oval found on the frame."""
    faces = detect_faces(np.ascontiguousarray(frame))
    assert faces
    x0, y0, x1, y1 = max(faces, key=lambda f: f.area).box
    w, h = x1 - x0, y1 - y0
    return Box(int(x0 + 0.2 * w), int(y0 + 0.2 * h), int(0.6 * w), int(0.6 * h))


def test_a_cut_out_presenter_stands_on_the_green_background(cutout):
    record, files, avatar = cutout
    info = probe_video(files["green/video.mp4"])
    width, height = info.width, info.height
    scene = record.request.scenes[0]
    placement = place(scene.layout, width, height, avatar.width, avatar.height, cutout=True)
    assert placement.box == Box(0, 0, width, height)
    masks = read_mask_frames(files["mask"], size=(avatar.width, avatar.height))
    worst_green, worst_person, least_outside, frames = 1.0, 1.0, 1.0, 0
    for frame, mask in zip(iter_frames(files["green/video.mp4"]), masks, strict=False):
        person = fit(mask, placement.crop, width, height)
        outside = person < 0.5
        # The portrait's wall is about half the frame: a mask that took everything for the person
        # (all ones) would leave no pixel to be green, and the green check nothing to check.
        least_outside = min(least_outside, float(outside.mean()))
        green = np.abs(frame.astype(np.int16) - GREEN).max(axis=2) <= 48
        worst_green = min(worst_green, float(green[outside].mean()))
        face = central_face_box(frame)
        not_green = ~green[face.y : face.bottom, face.x : face.right]
        worst_person = min(worst_person, float(not_green.mean()))
        frames += 1
    print(
        f"{frames} frames: worst green outside the mask {worst_green:.4f}, "
        f"worst person in the face box {worst_person:.4f}, least of the frame outside {least_outside:.3f}"
    )
    assert frames >= info.frames - 1 and frames > 10
    assert least_outside >= 0.2
    assert worst_green >= 0.95
    assert worst_person >= 0.95


def test_a_transparent_render_is_opaque_over_the_face_and_clear_in_the_corners(cutout):
    _, files, _ = cutout
    faces = [central_face_box(f) for f in iter_frames(files["clear/video.mp4"])]
    for name in ("clear/video.webm", "clear/video.mov"):
        lowest_face, highest_corner, count = 255.0, 0.0, 0
        for face, rgba in zip(faces, read_alpha_frames(files[name]), strict=False):
            alpha = rgba[..., 3].astype(np.float32) / 255
            lowest_face = min(lowest_face, float(alpha[face.y : face.bottom, face.x : face.right].mean()))
            corners = [alpha[:16, :16], alpha[:16, -16:], alpha[-16:, :16], alpha[-16:, -16:]]
            highest_corner = max(highest_corner, *(float(c.max()) for c in corners))
            count += 1
        print(f"{name}: {count} frames, face alpha ≥ {lowest_face:.3f}, corner alpha ≤ {highest_corner:.3f}")
        assert count >= len(faces) - 1
        assert lowest_face >= 0.9
        assert highest_corner <= 0.1
