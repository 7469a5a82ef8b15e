"""The offline render runs the pipeline's worker steps for a composition, in order, with the task
documents and files a worker would get. The steps here are stand-ins inside this test (they record
what they were given and write small files): the real engines, matte and compositor have their own
tests, and the full render of each template is the integration test's."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from talkstack.contract.captions import SpeechTimings
from talkstack.contract.composition import CompositionRequest
from talkstack.contract.worker import AvatarTask, ComposeTask, MatteTask, VoiceTask
from talkstack.engines.base import RenderResult
from talkstack.errors import ErrorCode, TalkstackError
from talkstack.templates import get_template, instantiate
from talkstack.templates.assets import asset_path
from talkstack.workers import lite_steps
from talkstack.workers.offline_composition import local_media, render_composition


class StandIns:
    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.calls: list[tuple[Any, dict[str, Path]]] = []
        self.marked: list[tuple[str, bool]] = []
        for model in ("lite-voice", "lite-avatar", "lite-matte", "compose"):
            monkeypatch.setitem(lite_steps.LITE_STEPS, model, self.step)

    def step(self, task, inputs, outdir, progress):

        self.calls.append((task, dict(inputs)))
        outputs = {}
        for role in task.outputs:
            if task.step == "voice" and role == "words":
                continue  # like an engine that gives no timings: the offline render aligns them
            path = outdir / f"{role}.bin"
            path.write_bytes(role.encode())
            outputs[role] = path
        progress(1.0, "done")
        return outputs, RenderResult(
            output=next(iter(outputs.values())), bytes=1, duration_s=1.0, warnings=["w"]
        )


@pytest.fixture
def stand_ins(monkeypatch):
    import talkstack.media.alignment as alignment

    def align(audio: Path, text: str, language: str) -> SpeechTimings:  # the captions part's align_words
        return SpeechTimings(language=language, source="aligned", duration_s=1.0, words=[])

    monkeypatch.setattr(alignment, "align_words", align)
    return StandIns(monkeypatch)


def _staged(tmp_path: Path, template_id: str) -> tuple[CompositionRequest, Path]:
    root = tmp_path / "media"

    def resolve(name: str) -> str:
        target = root / "assets" / name
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(asset_path(name).read_bytes())
        return f"assets/{name}"

    template = get_template(template_id)
    return CompositionRequest.model_validate(
        instantiate(template, template.example, resolve_asset=resolve)
    ), root


def test_social_ad_runs_voice_avatar_matte_compose(tmp_path, stand_ins):
    request, root = _staged(tmp_path, "social-ad")
    seen: list[float] = []
    warnings: list[str] = []
    produced = render_composition(
        request,
        tmp_path / "work",
        progress=lambda f, m: seen.append(f),
        media=local_media(root),
        warnings=warnings,
    )
    steps = [task.step for task, _ in stand_ins.calls]
    assert steps == ["voice", "avatar", "matte", "compose"]  # the title card needs no engine
    (voice, _), (avatar, avatar_in), (matte, matte_in), (compose, compose_in) = stand_ins.calls
    assert isinstance(voice, VoiceTask) and voice.text == request.scenes[0].source.inputs.text  # type: ignore[union-attr]
    assert set(voice.outputs) == {"audio", "words"} and voice.options.language == "en-us"
    assert not voice.watermark and not avatar.watermark and compose.watermark
    assert isinstance(avatar, AvatarTask) and avatar.options.fps == 25
    assert avatar_in["audio"].name == "audio.bin" and avatar_in["image"].name == "portrait.png"
    assert isinstance(matte, MatteTask) and matte.options.scene == 0 and matte.options.model == "lite-matte"
    assert set(matte_in) == {"video", "image"}  # a lite avatar's matte gets the photo too
    assert isinstance(compose, ComposeTask)
    assert (compose.options.width, compose.options.height) == (720, 1280)
    assert [s.rendered for s in compose.options.scenes] == [True, False]
    assert compose.options.scenes[0].words and compose.options.scenes[0].mask
    assert compose.options.scenes[0].language == "en-us"
    assert set(compose_in) == {
        "scene_0_video",
        "scene_0_words",
        "scene_0_mask",
        "scene_0_background",
        "music",
    }
    assert compose_in["music"].name == "music-loop.m4a"
    words = SpeechTimings.model_validate_json(compose_in["scene_0_words"].read_text())
    assert words.language == "en-us" and words.source == "aligned"
    assert {"video", "thumbnail", "captions_srt", "scene_thumbnail_0", "scene_thumbnail_1"} <= set(produced)
    assert seen[-1] == 1.0 and seen == sorted(seen)
    assert warnings and all(w.endswith(": w") for w in warnings)


def test_preview_is_360p(tmp_path, stand_ins):
    request, root = _staged(tmp_path, "news")
    request = request.model_copy(update={"preview": True})
    render_composition(request, tmp_path / "work", progress=lambda f, m: None, media=local_media(root))
    compose = stand_ins.calls[-1][0]
    assert (compose.options.width, compose.options.height) == (640, 360) and compose.options.preview
    assert [task.step for task, _ in stand_ins.calls] == ["voice", "avatar", "compose"]  # split: no cutout


def test_gpu_engines_and_s3_media_are_refused(tmp_path, stand_ins):
    request, root = _staged(tmp_path, "tutorial")
    data = request.model_dump(mode="json", exclude_none=True)
    data["scenes"][1]["source"]["options"]["model"] = "multitalk"
    with pytest.raises(TalkstackError) as caught:
        render_composition(
            CompositionRequest.model_validate(data),
            tmp_path / "w",
            progress=lambda f, m: None,
            media=local_media(root),
        )
    assert caught.value.code == ErrorCode.MODEL_UNAVAILABLE
    data["scenes"][1]["source"]["options"]["model"] = "lite-avatar"
    data["scenes"][1]["background"]["media"] = "s3://some-bucket/slide.jpg"
    with pytest.raises(TalkstackError) as caught:
        render_composition(
            CompositionRequest.model_validate(data),
            tmp_path / "w",
            progress=lambda f, m: None,
            media=local_media(root),
        )
    assert caught.value.code == ErrorCode.INPUT_NOT_FOUND


def test_recorded_speech_is_aligned_by_the_compose_step_as_in_the_pipeline(tmp_path, stand_ins):
    """An audio-driven avatar with a transcript: the pipeline's compose task gets no word timings
    for it (no voice step) and the compositor aligns the transcript to the scene's sound; the
    offline render hands the compose step the same inputs."""
    root = tmp_path / "media"
    root.mkdir()
    (root / "p.png").write_bytes(asset_path("samples/portrait.png").read_bytes())
    (root / "s.wav").write_bytes(asset_path("samples/speech.wav").read_bytes())
    request = CompositionRequest.model_validate(
        {
            "task": "composition",
            "scenes": [
                {
                    "source": {"type": "avatar", "inputs": {"image": "p.png", "audio": "s.wav"}},
                    "transcript": "Hello there",
                }
            ],
            "options": {"captions": {"sidecar": True}},
        }
    )
    render_composition(request, tmp_path / "work", progress=lambda f, m: None, media=local_media(root))
    assert [task.step for task, _ in stand_ins.calls] == ["avatar", "compose"]
    compose, compose_in = stand_ins.calls[-1]
    assert set(compose_in) == {"scene_0_video"}
    assert not compose.options.scenes[0].words
    assert compose.options.captioned_scenes() == [0]  # the compositor aligns the transcript
