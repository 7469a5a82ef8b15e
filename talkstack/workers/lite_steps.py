"""CPU steps any worker runs without a model to load: the lite engines (a task's options → the CPU
engines' own options) and `stitch`, the join step of parallel long avatars.

GPU engines (talkstack.engines.gpu.base.Engine) have the same call signature:
`(task, inputs: {role: Path}, outdir, progress) → (outputs: {role: Path}, RenderResult)`.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from talkstack.contract.composition import ComposeOptions
from talkstack.contract.request import AvatarOptions, VoiceOptions
from talkstack.contract.worker import StitchOptions, WorkerTask, task_options
from talkstack.engines.base import ProgressFn, RenderResult
from talkstack.errors import ErrorCode, TalkstackError
from talkstack.media.audio import read_audio, write_wav

StepFn = Callable[[WorkerTask, dict[str, Path], Path, ProgressFn], tuple[dict[str, Path], RenderResult]]


def _espeak_pitch(semitones: float) -> int:
    # espeak-ng pitch is 0–99 around 50; about 4 units per semitone sounds right for its voices.
    return max(0, min(99, round(50 + 4 * semitones)))


def lite_voice(
    task: WorkerTask, inputs: dict[str, Path], outdir: Path, progress: ProgressFn
) -> tuple[dict[str, Path], RenderResult]:
    from talkstack.engines.lite.voice import LiteVoiceOptions, synthesize

    options = task_options(task, VoiceOptions)
    if task.text is None:
        raise TalkstackError(ErrorCode.INVALID_REQUEST, "voice step without text")
    output = outdir / f"speech.{options.format}"
    progress(0.1, "synthesising")
    result = synthesize(
        task.text,
        output,
        options=LiteVoiceOptions(
            voice=options.language.lower(), speed=options.speed, pitch=_espeak_pitch(options.pitch)
        ),
        reference_voice=inputs.get("reference_voice"),
    )
    progress(1.0, "speech ready")
    return {"audio": output}, result


def lite_avatar(
    task: WorkerTask, inputs: dict[str, Path], outdir: Path, progress: ProgressFn
) -> tuple[dict[str, Path], RenderResult]:
    from talkstack.engines.lite.avatar import LiteAvatarOptions, render_avatar

    options = task_options(task, AvatarOptions)
    audio = inputs["audio"]
    warnings = []
    if options.max_duration_s is not None:
        clip = read_audio(audio)
        keep = int(options.max_duration_s * clip.sample_rate)
        if keep < len(clip.samples):
            audio = write_wav(outdir / "speech-cut.wav", clip.samples[:keep], clip.sample_rate)
    if options.width is not None:
        warnings.append(
            "lite-avatar keeps the photo's aspect ratio: width/height bound the longest side only"
        )
    if "second_audio" in inputs:
        warnings.append("lite-avatar animates one face: second_audio was ignored")
    short_side = {"480p": 480, "720p": 720}.get(options.effective_resolution or "")
    lite = LiteAvatarOptions(
        fps=options.fps,
        short_side=short_side,
        max_side=max(options.width or 0, options.height or 0) or 1280,
        seed=options.seed or 0,
    )
    video, poster = outdir / "video.mp4", outdir / "thumbnail.jpg"
    result = render_avatar(inputs["image"], audio, video, options=lite, poster=poster, progress=progress)
    result.warnings.extend(warnings)
    return {"video": video, "thumbnail": poster}, result


def stitch(
    task: WorkerTask, inputs: dict[str, Path], outdir: Path, progress: ProgressFn
) -> tuple[dict[str, Path], RenderResult]:
    """Join the chunk videos of a parallel long avatar (CPU; any backend runs it)."""
    from talkstack.engines.quality import with_quality
    from talkstack.media.image import read_image
    from talkstack.media.segments import Chunk
    from talkstack.media.stitch import opening_frame, stitch_chunks
    from talkstack.media.video import probe_video

    chunks = [Chunk(**c.model_dump()) for c in task_options(task, StitchOptions).chunks]
    videos = [inputs[f"chunk_{c.index}"] for c in chunks]
    fps = round(probe_video(videos[0]).fps)
    clip = read_audio(inputs["audio"])
    from talkstack.safety.watermark import frame_marker, write_marked_wav

    speech = write_marked_wav(
        outdir / "speech.wav", clip.samples[: int(chunks[-1].end_s * clip.sample_rate)], clip.sample_rate
    )
    video, poster = outdir / "video.mp4", outdir / "thumbnail.jpg"
    progress(0.1, f"stitching {len(chunks)} chunks")
    # Each chunk is colour-matched before the crossfade (docs/quality.md): to the avatar's photo when
    # the task carries it, else to the first chunk's opening frame (the model's render of the photo).
    photo = read_image(inputs["image"])[0] if "image" in inputs else None
    reference = photo if photo is not None else opening_frame(videos[0])
    frames = stitch_chunks(
        chunks, videos, speech, video, fps=fps, poster=poster, reference=reference, mark=frame_marker()
    )
    info = probe_video(video)
    warnings = [f"cut {c.index} is not in a pause" for c in chunks[1:] if not c.at_pause]
    result = RenderResult(
        output=video,
        bytes=video.stat().st_size,
        duration_s=frames / fps,
        poster=poster,
        width=info.width,
        height=info.height,
        fps=fps,
        frames=frames,
        warnings=warnings,
    )
    if photo is not None:  # the joined video's report, seams included (identity needs the photo)
        cuts = [c.start_s for c in chunks[1:]]
        result = with_quality(result, photo, speech_s=chunks[-1].end_s, boundaries_s=cuts)
    return {"video": video, "thumbnail": poster}, result


def lite_matte(
    task: WorkerTask, inputs: dict[str, Path], outdir: Path, progress: ProgressFn
) -> tuple[dict[str, Path], RenderResult]:
    """Cut the person out of a composition scene (CPU): MatteTask → `mask`, a grey video."""
    from talkstack.engines.lite.matte import render_matte

    return render_matte(task, inputs, outdir, progress)


def compose(
    task: WorkerTask, inputs: dict[str, Path], outdir: Path, progress: ProgressFn
) -> tuple[dict[str, Path], RenderResult]:
    """Assemble a composition from its rendered scenes (CPU; any backend runs it). The compose
    package knows no engine, so its answer (ComposedVideo) becomes the step's RenderResult here."""
    from talkstack.compose.render import compose_video

    composed = compose_video(
        task_options(task, ComposeOptions), inputs, outdir, progress, watermark=task.watermark
    )
    result = RenderResult(
        output=composed.outputs["video"],
        bytes=composed.outputs["video"].stat().st_size,
        duration_s=composed.duration_s,
        poster=composed.outputs.get("thumbnail"),
        width=composed.width,
        height=composed.height,
        fps=composed.fps,
        frames=composed.frames,
        warnings=composed.warnings,
    )
    return composed.outputs, result


LITE_STEPS: dict[str, StepFn] = {
    "lite-voice": lite_voice,
    "lite-avatar": lite_avatar,
    "stitch": stitch,
    "lite-matte": lite_matte,
    "compose": compose,
}
"""CPU steps by model id (`stitch` joins the chunks of parallel long avatars and `compose` assembles
compositions; neither is a user model)."""
