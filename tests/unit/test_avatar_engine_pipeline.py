"""The avatar engine around a stub of the official pipeline object, not around a replaced `_generate`.

`AvatarEngine._generate` calls the pipeline the engine built — MultiTalkPipeline.generate (MultiTalk
c1ad840) or InfiniteTalkPipeline.generate_infinitetalk (InfiniteTalk 0107cd9), both in
wan/multitalk.py — while a forward pre-hook on `pipeline.model` (the DiT) counts passes for progress,
then turns the returned tensor into frames. The stubs here sit at that object: the upstream
signatures (no **kwargs, so a misspelt argument fails), the upstream window loop (the DiT called
`sampling_steps` × 2 or 3 times per window, motion frames dropped from later windows, the embedding
extended and the result cut as upstream does), and the upstream output: one person's video as a
float32 tensor [3, T, H, W] in [-1, 1] (`gen_video_samples[0]`, VAE decodes clamped to [-1, 1]).

Each frame the stub renders draws its own index: ten black/white stripes (the index in binary), a
pure red band (channel 0 only) and a mid-grey band (0.0). The tests decode the MP4 the engine wrote
and read every frame's index back, so the tensor → frame conversion, the trim to the speech and
the encoding are checked frame by frame; progress is checked against the passes the DiT ran, in
the same renders. The quality report each render ends in (MediaPipe) is passed over here.
"""

from __future__ import annotations

import ast
import inspect
import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from talkstack.engines.gpu import avatar as gpu_avatar
from talkstack.engines.gpu import avatar_prep as prep
from talkstack.engines.gpu.avatar import AvatarEngine
from talkstack.media.video import iter_frames, probe_video
from tests.conftest import PORTRAIT
from tests.support import wan_upstream
from tests.unit.test_avatar_engine import _task, tiny_wav2vec2
from tests.unit.test_avatar_prep import _cut

HEIGHT, WIDTH = 96, 160  # what the stub renders at (upstream: its size bucket, a multiple of 16)
BITS, STRIPE = 10, 16  # the frame index in binary, one 16-pixel stripe per bit (macroblock-aligned)
GREY = 0.0  # the middle of [-1, 1]: 127.5 in 8 bits


def _template() -> torch.Tensor:
    frame = torch.full((3, HEIGHT, WIDTH), GREY)
    frame[:, 48:72] = torch.tensor([1.0, -1.0, -1.0])[:, None, None]  # pure red
    return frame


TEMPLATE = _template()


def drawn(index: int) -> torch.Tensor:
    """Frame `index` as the VAE would decode it: [3, H, W] in [-1, 1]."""
    frame = TEMPLATE.clone()
    bits = torch.tensor([1.0 if index >> bit & 1 else -1.0 for bit in range(BITS)])
    frame[:, :48, : BITS * STRIPE] = bits.repeat_interleave(STRIPE)
    return frame


def read_index(frame: np.ndarray) -> int:
    """The index a decoded RGB frame shows (stripe centres, away from the codec's edges)."""
    centres = frame[8:40, :, :].mean(axis=(0, 2))
    return sum(1 << bit for bit in range(BITS) if centres[bit * STRIPE + 4 : bit * STRIPE + 12].mean() > 128)


class StubDiT(torch.nn.Module):
    """WanModel's place in the pipeline: called as `self.model([latent], t=..., **args)[0]`."""

    def forward(self, x: list[torch.Tensor], t: torch.Tensor, **_: Any) -> list[torch.Tensor]:
        return x


class _StubPipeline:
    """The official pipeline after construction: `.model` and the window loop of wan/multitalk.py."""

    infinitetalk = False

    def __init__(self) -> None:
        self.model = StubDiT()
        self.calls: list[dict[str, Any]] = []

    def _generate(
        self,
        input_data: dict,
        *,
        motion_frame: int,
        frame_num: int,
        sampling_steps: int,
        text_guide_scale: float,
        max_frames_num: int,
        extra_args: Any,
    ) -> torch.Tensor:
        assert extra_args.use_apg in (True, False)  # upstream reads extra_args unconditionally
        names = ["person1", "person2"][: len(input_data["cond_audio"])]
        embs = [torch.load(input_data["cond_audio"][name]) for name in names]
        assert all(e.shape[0] > frame_num for e in embs), "length not satisfies frame nums"
        rows = embs[0].shape[0]
        passes = 2 if math.isclose(text_guide_scale, 1.0) else 3
        gen_video_list: list[torch.Tensor] = []
        start, end, first, last, cur_motion = 0, frame_num, True, False, 1
        miss_lengths: list[int] = []
        latent = torch.zeros(1)
        while True:
            for step in range(sampling_steps):
                for _ in range(passes):
                    self.model([latent], t=torch.tensor([float(step)]))[0]
            # the window's decoded frames cover audio rows [start, start + frame_num): B C T H W
            videos = torch.stack([drawn(start + k) for k in range(frame_num)], dim=1)[None]
            gen_video_list.append(videos if first else videos[:, :, cur_motion:])
            if last:
                break
            first, cur_motion = False, motion_frame
            start += frame_num - cur_motion
            end = start + frame_num
            if end >= min(max_frames_num, len(embs[0])):
                last = True
                miss_lengths = []
                for i, emb in enumerate(embs):
                    miss = end - len(emb) + 3 if end >= len(emb) else 0
                    if miss:
                        embs[i] = torch.cat([emb, torch.flip(emb[-miss:], dims=[0])], dim=0)
                    miss_lengths.append(miss)
            if max_frames_num <= frame_num:
                break
        out = torch.cat(gen_video_list, dim=2)[:, :, : int(max_frames_num)].to(torch.float32)
        if max_frames_num > frame_num and sum(miss_lengths) > 0:
            out = out[:, :, :rows] if self.infinitetalk else out[:, :, : -1 * miss_lengths[0]]
        self.calls.append({"rows": rows, "returned": out.shape[2]})
        return out[0]  # [3, T, H, W]


class StubMultiTalkPipeline(_StubPipeline):
    def generate(  # MultiTalk c1ad840 wan/multitalk.py:346-362
        self,
        input_data,
        size_buckget="multitalk-480",
        motion_frame=25,
        frame_num=81,
        shift=5.0,
        sampling_steps=40,
        text_guide_scale=5.0,
        audio_guide_scale=4.0,
        n_prompt="",
        seed=-1,
        offload_model=True,
        max_frames_num=1000,
        face_scale=0.05,
        progress=True,
        color_correction_strength=0.0,
        extra_args=None,
    ):
        return self._generate(
            input_data,
            motion_frame=motion_frame,
            frame_num=frame_num,
            sampling_steps=sampling_steps,
            text_guide_scale=text_guide_scale,
            max_frames_num=max_frames_num,
            extra_args=extra_args,
        )


class StubInfiniteTalkPipeline(_StubPipeline):
    infinitetalk = True

    def generate_infinitetalk(  # InfiniteTalk 0107cd9 wan/multitalk.py:376-392
        self,
        input_data,
        size_buckget="infinitetalk-480",
        motion_frame=25,
        frame_num=81,
        shift=5.0,
        sampling_steps=40,
        text_guide_scale=5.0,
        audio_guide_scale=4.0,
        n_prompt="",
        seed=-1,
        offload_model=True,
        max_frames_num=1000,
        face_scale=0.05,
        progress=True,
        color_correction_strength=0.0,
        extra_args=None,
    ):
        return self._generate(
            input_data,
            motion_frame=motion_frame,
            frame_num=frame_num,
            sampling_steps=sampling_steps,
            text_guide_scale=text_guide_scale,
            max_frames_num=max_frames_num,
            extra_args=extra_args,
        )


STUBS = {"multitalk": StubMultiTalkPipeline, "infinitetalk": StubInfiniteTalkPipeline}


class DiTPasses:
    """Counts the stub DiT's forward calls with torch's own hook machinery (as the engine does)."""

    def __init__(self, model: torch.nn.Module) -> None:
        self.count = 0
        model.register_forward_hook(lambda *_: setattr(self, "count", self.count + 1))


def render(model: str, audio: Path, outdir: Path, **options: Any):
    pipeline = STUBS[model]()
    passes = DiTPasses(pipeline.model)
    engine = AvatarEngine(model, weights_dir=outdir / "weights", audio_encoder=tiny_wav2vec2())
    engine.pipeline = pipeline  # built: what _build_pipeline returns on a GPU box
    seen: list[tuple[float, str]] = []
    outdir.mkdir(parents=True, exist_ok=True)
    outputs, result = engine(_task(model, **options), {"image": PORTRAIT, "audio": audio}, outdir,
                             lambda f, m: seen.append((f, m)))  # fmt: skip
    return outputs, result, seen, pipeline, passes


@pytest.fixture(autouse=True)
def no_quality_report(monkeypatch: pytest.MonkeyPatch) -> None:
    # Every render ends in with_quality (MediaPipe over the whole video): nothing here asserts it
    # and it costs more than the render, so the result passes through unchanged.
    monkeypatch.setattr(gpu_avatar, "with_quality", lambda result, *_a, **_k: result)


def _default(node: ast.expr | None) -> Any:
    if node is None:
        return inspect.Parameter.empty
    try:
        return ast.literal_eval(node)
    except ValueError:
        return ast.unparse(node)  # not a literal: compared as source text (and shown if it differs)


def upstream_parameters(source: Path, cls: str, method: str) -> list[tuple[str, Any]]:
    """A method's named parameters with their defaults, as the source file declares them: read with
    `ast`, nothing imported (the official code needs GPU packages to import). A `**kwargs` is left
    out: the stubs leave it out on purpose, so that a misspelt argument fails instead of vanishing."""
    tree = ast.parse(source.read_text(encoding="utf-8"))
    [klass] = [n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == cls]
    [fn] = [n for n in klass.body if isinstance(n, ast.FunctionDef) and n.name == method]
    args = fn.args
    positional = [*args.posonlyargs, *args.args]
    defaults = [None] * (len(positional) - len(args.defaults)) + list(args.defaults)
    named = [(a.arg, _default(d)) for a, d in zip(positional, defaults, strict=True)]
    return named + [(a.arg, _default(d)) for a, d in zip(args.kwonlyargs, args.kw_defaults, strict=True)]


def stub_parameters(method: Any) -> list[tuple[str, Any]]:
    """The stub's named parameters with their defaults; it must take no **kwargs."""
    parameters = inspect.signature(method).parameters.values()
    assert all(p.kind is not p.VAR_KEYWORD for p in parameters), "a stub must refuse unknown arguments"
    return [(p.name, p.default) for p in parameters]


UPSTREAM = {  # model: (the official class in wan/multitalk.py, the method the engine calls, our stub)
    "multitalk": ("MultiTalkPipeline", "generate", StubMultiTalkPipeline.generate),
    "infinitetalk": (
        "InfiniteTalkPipeline",
        "generate_infinitetalk",
        StubInfiniteTalkPipeline.generate_infinitetalk,
    ),
}


@pytest.mark.parametrize("model", UPSTREAM)
def test_each_stub_has_the_signature_of_the_upstream_method_it_stands_for(model: str) -> None:
    """Against the official code itself, parsed from the checkout MULTITALK_CODE_DIR /
    INFINITETALK_CODE_DIR names (at the commit modal_workers/avatar.py pins); skipped without one."""
    code = wan_upstream.code_dir(model)
    if code is None:
        pytest.skip(f"no {model} checkout ({model.upper()}_CODE_DIR): the stub drift guard below still runs")
    cls, method, stub = UPSTREAM[model]
    assert stub_parameters(stub) == upstream_parameters(code / "wan" / "multitalk.py", cls, method)


def test_the_stubs_have_not_drifted_from_the_signatures_copied_from_upstream() -> None:
    """A guard against the stubs drifting from the signatures copied by hand from MultiTalk c1ad840
    and InfiniteTalk 0107cd9 (wan/multitalk.py:346-362 and :376-392). It checks our copy, not
    upstream: the test above compares with upstream itself where a checkout is at hand."""
    multitalk = inspect.signature(StubMultiTalkPipeline.generate).parameters
    infinitetalk = inspect.signature(StubInfiniteTalkPipeline.generate_infinitetalk).parameters
    names = ("self", "input_data", "size_buckget", "motion_frame", "frame_num", "shift", "sampling_steps")
    names += ("text_guide_scale", "audio_guide_scale", "n_prompt", "seed", "offload_model")
    names += ("max_frames_num", "face_scale", "progress", "color_correction_strength", "extra_args")
    assert tuple(multitalk) == tuple(infinitetalk) == names
    assert not hasattr(StubMultiTalkPipeline, "generate_infinitetalk")
    assert not hasattr(StubInfiniteTalkPipeline, "generate")


@pytest.mark.parametrize(
    ("model", "seconds", "mode", "windows"),
    # one 81-frame window trimmed to 37 frames; two windows returning exactly 125 frames
    [
        ("multitalk", 1.5, "clip", 1),
        ("multitalk", 5.0, "streaming", 2),
        ("infinitetalk", 5.0, "streaming", 2),
    ],
)
def test_every_frame_the_model_returns_for_the_speech_is_in_the_video_in_order(
    model: str, seconds: float, mode: str, windows: int, tmp_path: Path
) -> None:
    speech = _cut(tmp_path, seconds)
    outputs, result, seen, pipeline, passes = render(model, speech, tmp_path / "out", steps=4)

    frames = list(iter_frames(outputs["video"]))
    expected = prep.embedding_frames(seconds)
    assert len(frames) == result.frames == probe_video(outputs["video"]).frames == expected
    [call] = pipeline.calls
    assert call["returned"] >= expected and (mode == "clip") == (call["returned"] > expected)
    # the k-th frame of the video is the k-th frame the model rendered for the speech
    assert [read_index(f) for f in frames] == list(range(expected))
    # [3, T, H, W] in [-1, 1] became RGB in [0, 255]: red stays red, 0.0 lands mid-scale
    for frame in (frames[0], frames[-1]):
        red = frame[52:68, 8:-8].reshape(-1, 3).mean(axis=0)
        assert red[0] > 235 and red[1] < 20 and red[2] < 20, red
        assert abs(frame[76:92, 8:-8].mean() - 127.5) < 4
    assert (result.width, result.height) == (WIDTH, HEIGHT)

    # Rendering progress follows the model's forward passes to the end (the same render).
    rendering = [f for f, message in seen if message == "rendering"]
    assert passes.count == windows * 4 * 3  # windows × 4 steps × 3 passes (text guidance 5)
    assert len(rendering) == passes.count  # one report per pass of the DiT
    assert rendering == sorted(set(rendering)) and rendering[0] > 0.05
    assert rendering[-1] == pytest.approx(0.90)  # the last pass ends the rendering share, no sooner
    before = [f for f, m in seen if m != "rendering" and f < rendering[0]]
    after = [f for f, m in seen if m != "rendering" and f > rendering[-1]]
    assert before and after and len(before) + len(after) + len(rendering) == len(seen)
