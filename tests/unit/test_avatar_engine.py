"""The avatar engine end to end on CPU: real speech and photo in, a real MP4 out.

The call into the official MultiTalk / InfiniteTalk code (`AvatarEngine._generate`) is the one
faked boundary: their 80 GB of weights cannot be downloaded or run here. The fake checks what the
official code would check (the input document, embedding lengths, the window rule) and returns
frames the way it does. The wav2vec2 audio embedding is real: a tiny random wav2vec2 built from a
config runs through the same code path as chinese-wav2vec2-base.
"""

from __future__ import annotations

import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from transformers import Wav2Vec2Config, Wav2Vec2Model

from talkstack.contract.worker import AvatarTask, Markers, OutputUrl, WorkerTask
from talkstack.engines.gpu import avatar_prep as prep
from talkstack.engines.gpu.avatar import AvatarEngine
from talkstack.errors import ErrorCode, TalkstackError
from talkstack.media.video import probe_video
from tests.conftest import PORTRAIT, SPEECH
from tests.unit.test_avatar_prep import _cut

LAYERS, HIDDEN = 2, 32


def tiny_wav2vec2() -> Wav2Vec2Model:
    torch.manual_seed(0)
    config = Wav2Vec2Config(
        hidden_size=HIDDEN,
        num_hidden_layers=LAYERS,
        num_attention_heads=2,
        intermediate_size=64,
        conv_dim=(16,) * 7,
        num_conv_pos_embeddings=16,
        num_conv_pos_embedding_groups=2,
    )
    return Wav2Vec2Model(config).eval()


class FakeOfficialCode:
    """Stands in for MultiTalkPipeline.generate: validates its input like the real one, then returns
    as many frames as the real loop would for this embedding and these arguments
    (`prep.upstream_outcome`, checked against upstream's own loop in test_avatar_prep.py), here the
    reference photo brightened by the audio embedding's energy per frame."""

    def __init__(self) -> None:
        self.calls: list[dict[str, Any]] = []

    def __call__(
        self, engine: AvatarEngine, document: dict, settings: prep.GenerationSettings, samples: int, progress
    ):
        from PIL import Image

        embeddings = [torch.load(p) for p in document["cond_audio"].values()]
        rows = prep.frames_for_samples(samples)
        for embedding in embeddings:
            # the official assertion: the embedding must be longer than one window
            assert embedding.shape[0] > settings.frame_num, "length not satisfies frame nums"
            assert embedding.shape[0] == rows
        reference = np.asarray(
            Image.open(document.get("cond_image") or document["cond_video"]).convert("RGB")
        )
        height, width = 240, 320  # the model renders at its bucket size, not the photo's
        small = np.asarray(Image.fromarray(reference).resize((width, height)))
        energy = embeddings[0].abs().mean(dim=(1, 2)).numpy()
        energy = (energy - energy.min()) / (np.ptp(energy) + 1e-9)
        kwargs = settings.generate_kwargs()
        outcome = prep.upstream_outcome(
            engine.model,
            rows,
            frame_num=kwargs["frame_num"],
            motion_frame=kwargs["motion_frame"],
            max_frames_num=kwargs["max_frames_num"],
        )
        total = outcome.windows * settings.sampling_steps * settings.passes_per_step()
        for i in range(total):
            progress((i + 1) / total)
        energy = np.resize(energy, outcome.frames)  # upstream mirrors rows past the end; any will do
        video = np.stack([np.clip(small * (0.8 + 0.2 * e), 0, 255).astype(np.uint8) for e in energy])
        self.calls.append(
            {"document": document, "settings": settings, "embeddings": embeddings, "outcome": outcome}
        )
        return video


def _task(model: str = "multitalk", **options: Any) -> WorkerTask:
    put = OutputUrl(url="http://127.0.0.1:9/none", key="k", content_type="application/json")
    return AvatarTask(
        job_id="job-1",
        step="avatar",
        attempt_id="avatar-1-abc",
        attempt=1,
        model=model,
        options={"model": model, **options},
        outputs={"video": put, "thumbnail": put},
        markers=Markers(progress=put, result=put, error=put),
        heartbeat_interval_s=10,
        deadline=datetime.now(UTC) + timedelta(hours=1),
    )


@pytest.fixture(params=["multitalk"])
def engine(
    request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> tuple[AvatarEngine, FakeOfficialCode]:
    fake = FakeOfficialCode()
    engine = AvatarEngine(request.param, weights_dir=tmp_path / "weights", audio_encoder=tiny_wav2vec2())
    engine.pipeline = object()  # loaded: the official pipeline is never built on CPU
    monkeypatch.setattr(AvatarEngine, "_generate", lambda self, *args: fake(self, *args))
    engine.load()
    return engine, fake


def test_embedding_has_one_row_per_video_frame_and_every_layer() -> None:
    engine = AvatarEngine("multitalk", audio_encoder=tiny_wav2vec2())
    speech = prep.prepare_tracks(SPEECH).mix
    embedding = engine.embed(speech)
    assert embedding.shape == (prep.embedding_frames(len(speech) / prep.SAMPLE_RATE), LAYERS, HIDDEN)
    assert embedding.dtype == torch.float32 and torch.isfinite(embedding).all()
    # speech and silence give different features (the encoder really ran on the audio)
    silent = engine.embed(np.zeros_like(speech[: prep.SAMPLE_RATE * 4]) + 1e-4)
    assert not torch.allclose(embedding[:50], silent[:50])


@pytest.mark.parametrize("engine", ["multitalk", "infinitetalk"], indirect=True)
def test_render_makes_an_mp4_as_long_as_the_speech(engine, tmp_path: Path) -> None:
    avatar, fake = engine
    out = tmp_path / "out"
    out.mkdir()
    seen: list[float] = []
    outputs, result = avatar.render(
        _task(prompt="A woman explains a chart", seed=5),
        {"image": PORTRAIT, "audio": SPEECH},
        out,
        lambda f, m: seen.append(f),
    )
    info = probe_video(outputs["video"])
    expected = prep.embedding_frames(prep.prepare_tracks(SPEECH).duration_s)
    assert info.frames == expected == result.frames
    assert (info.width, info.height, result.fps) == (320, 240, 25)
    assert info.audio is not None and info.duration_s == pytest.approx(expected / 25, abs=0.1)
    assert outputs["thumbnail"].read_bytes()[:2] == b"\xff\xd8"
    [call] = fake.calls
    assert call["document"]["prompt"] == "A woman explains a chart"
    assert call["settings"].seed == 5 and call["settings"].mode == "streaming"
    assert seen == sorted(seen) and seen[-1] >= 0.92
    # upstream returned every frame the speech needs without a window more than the speech needs
    # (MultiTalk with the embedding as long as the speech and its CLI's cap returned 3 fewer)
    assert call["outcome"].frames == expected
    assert call["outcome"].windows == call["settings"].windows(expected)


@pytest.mark.parametrize("seconds", [5.0, 3.28, 5.48])
def test_streams_return_every_frame_of_the_speech(engine, tmp_path: Path, seconds: float) -> None:
    # 5 s: MultiTalk used to return 122 of 125 frames (finding 3); 3.28 s = 82 frames, one past a
    # window; 5.48 s = 137 frames, exactly two windows' end (81 + 56).
    avatar, fake = engine
    _, result = avatar.render(
        _task(), {"image": PORTRAIT, "audio": _cut(tmp_path, seconds)}, tmp_path, lambda f, m: None
    )
    assert result.frames == round(seconds * 25) == fake.calls[0]["outcome"].frames


def test_short_speech_is_padded_for_the_model_and_trimmed_in_the_video(engine, tmp_path: Path) -> None:
    avatar, fake = engine
    outputs, result = avatar.render(
        _task(), {"image": PORTRAIT, "audio": _cut(tmp_path, 1.5)}, tmp_path, lambda f, m: None
    )
    assert probe_video(outputs["video"]).frames == 37 == result.frames  # 1.5 s at 25 fps, floored
    assert fake.calls[0]["embeddings"][0].shape[0] > prep.CLIP_FRAMES
    assert fake.calls[0]["settings"].mode == "clip"
    assert any("padded" in w for w in result.warnings)


def test_two_speakers_reach_the_model_with_converted_boxes(engine, tmp_path: Path) -> None:
    avatar, fake = engine
    task = _task(audio_type="add", speaker_boxes=[[10, 20, 120, 150], [200, 20, 120, 150]])
    inputs = {
        "image": PORTRAIT,
        "audio": _cut(tmp_path, 3, "a.wav"),
        "second_audio": _cut(tmp_path, 2, "b.wav"),
    }
    _, result = avatar.render(task, inputs, tmp_path, lambda f, m: None)
    document = fake.calls[0]["document"]
    assert document["audio_type"] == "add"
    assert document["bbox"] == {"person1": [20, 10, 170, 130], "person2": [20, 200, 170, 320]}
    assert len(fake.calls[0]["embeddings"]) == 2
    assert result.frames == 125  # 3 s then 2 s, in turn


@pytest.mark.parametrize("engine", ["infinitetalk"], indirect=True)
def test_two_speakers_are_refused_by_infinitetalk(engine, tmp_path: Path) -> None:
    avatar, fake = engine
    inputs = {"image": PORTRAIT, "audio": _cut(tmp_path, 3, "a.wav"), "second_audio": _cut(tmp_path, 2)}
    with pytest.raises(TalkstackError) as caught:
        avatar.render(_task("infinitetalk", audio_type="add"), inputs, tmp_path, lambda f, m: None)
    assert caught.value.code == ErrorCode.INVALID_REQUEST and "multitalk" in caught.value.message
    assert fake.calls == []


def test_a_turbo_task_on_a_non_turbo_worker_is_refused(engine, tmp_path: Path) -> None:
    avatar, _ = engine
    with pytest.raises(TalkstackError) as caught:
        avatar.render(_task(turbo=True), {"image": PORTRAIT, "audio": SPEECH}, tmp_path, lambda f, m: None)
    assert caught.value.code == ErrorCode.MODEL_UNAVAILABLE


def test_load_refuses_weights_that_are_not_at_their_pin_or_lock(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    # Checked by the weights module's own verify (manifests, pins, locks; test_weights.py) before
    # anything is read: an empty volume, or MultiTalk's unpinned repository never fetched.
    def build(_self: AvatarEngine) -> None:
        raise AssertionError("the pipeline must not be built from unverified weights")

    monkeypatch.setattr(AvatarEngine, "_build_pipeline", build)
    engine = AvatarEngine("multitalk", weights_dir=tmp_path, audio_encoder=tiny_wav2vec2())
    with pytest.raises(TalkstackError) as caught:
        engine.load()
    assert caught.value.code == ErrorCode.MODEL_UNAVAILABLE
    assert "MeiGen-AI/MeiGen-MultiTalk" in caught.value.message
    assert "modal_workers.weights --models multitalk" in caught.value.message


def test_an_engine_serves_only_its_models() -> None:
    with pytest.raises(TalkstackError):
        AvatarEngine("ltx-video")


def test_importing_the_engine_does_not_import_torch() -> None:
    code = "import sys, talkstack.engines.gpu.avatar; print('torch' in sys.modules)"
    assert (
        subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, check=True
        ).stdout.strip()
        == "False"
    )
