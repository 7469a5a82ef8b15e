"""Output scanning: sample frames of a generated video and run an image-safety classifier on them.

The worker that produced a job's main output calls `scan_output` before it writes its result
marker; the verdict (talkstack.contract.scan.OutputScan) travels in the marker to the job's
`result.scan`, and finalize holds a flagged output instead of publishing it.

The classifier is whatever the worker has (`ImageClassifier`): on the GPU workers the
talkstack-image-safety Modal app (a ViT fine-tuned for NSFW detection), on the CPU workers none
(no classifier whose code and weights are both under a permissive licence ships in a package;
docs/safety.md), and then the output is `not_scanned`, never `passed`. Speech is not transcribed:
a voice job's and a text-driven avatar's speech is the request's text, which input moderation
checked; speech from uploaded audio is marked `not_scanned`.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from talkstack.contract.composition import VIDEO_EXTENSIONS, AvatarSource, CompositionRequest, MediaSource
from talkstack.contract.request import JobRequestBase
from talkstack.contract.scan import FrameScores, OutputScan, SpeechScan
from talkstack.settings.scan import ScanSettings, get_scan_settings

if TYPE_CHECKING:  # av and numpy are the workers': finalize's Lambda imports this module without them
    import av
    import numpy as np

log = logging.getLogger(__name__)
NO_CLASSIFIER = "no image-safety classifier on this worker"


class ImageClassifier(Protocol):
    """Scores RGB frames: one dict per frame, label → probability (0…1)."""

    model: str
    """The classifier's model id, reported in the verdict."""

    def classify(self, frames: Sequence[np.ndarray]) -> list[dict[str, float]]: ...


def sample_times(duration_s: float, count: int) -> list[float]:
    """`count` evenly spaced timestamps from 0 to `duration_s`, the first and last frame included."""
    if duration_s <= 0 or count <= 1:
        return [0.0]
    step = duration_s / (count - 1)
    return [round(i * step, 3) for i in range(count)]


def sample_frames(path: Path, count: int) -> list[tuple[float, np.ndarray]]:
    """The decoded frames nearest to `count` evenly spaced times, as (time, RGB array); the last
    sample is the video's last frame. One pass over the video (no seeking: exact on any codec)."""
    import av

    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        duration = float(stream.duration * stream.time_base) if stream.duration else None
        if duration is None and container.duration:
            duration = container.duration / 1_000_000
        targets = sample_times(duration or 0.0, count)
        picked: dict[int, tuple[float, np.ndarray]] = {}
        last: av.VideoFrame | None = None
        for frame in container.decode(stream):
            last = frame
            t = float(frame.time or 0.0)
            due = [i for i, target in enumerate(targets) if i not in picked and t >= target - 1e-6]
            if due:  # the first frame at or past each target time
                array = frame.to_ndarray(format="rgb24")
                picked.update({i: (t, array) for i in due})
        if last is not None:  # the final sample is the last frame, whatever the stream's duration said
            picked[len(targets) - 1] = (float(last.time or 0.0), last.to_ndarray(format="rgb24"))
    seen: dict[float, np.ndarray] = {}
    for t, array in (picked[i] for i in sorted(picked)):
        seen.setdefault(round(t, 3), array)
    return list(seen.items())


def speech_of(request: JobRequestBase) -> SpeechScan:
    """Where the job's speech came from: the request's text (checked by input moderation), an
    upload (not transcribed, so not scanned), or nowhere (a video job). A composition's speech is
    its text-driven avatar scenes' scripts, unless a scene speaks uploaded audio or keeps a video
    upload's sound (a transcript is what the user says is said, not what was heard)."""
    if isinstance(request, CompositionRequest):
        speaking = [
            scene.source
            for scene in request.scenes
            if isinstance(scene.source, AvatarSource)
            or (
                isinstance(scene.source, MediaSource)
                and scene.source.keep_audio
                and scene.source.media.key.lower().endswith(VIDEO_EXTENSIONS)
            )
        ]
        if not speaking:
            return "none"
        scripted = all(
            isinstance(source, AvatarSource) and source.inputs.text is not None for source in speaking
        )
        return "input_text" if scripted else "not_scanned"
    if request.task == "video":
        return "none"
    inputs = request.inputs
    if getattr(inputs, "text", None) is not None:
        return "input_text"
    return "not_scanned"


def _speech_reason(speech: SpeechScan) -> str | None:
    if speech == "not_scanned":
        return "speech: not scanned (no speech recognition runs on the uploaded audio)"
    if speech == "input_text":
        return "speech: the request's text, checked by input moderation"
    return None


def with_speech(scan: OutputScan, speech: SpeechScan) -> OutputScan:
    """The verdict with what is known of the speech added (finalize knows the request)."""
    reasons = [r for r in scan.reasons if not r.startswith("speech:")]
    line = _speech_reason(speech)
    return scan.model_copy(update={"speech": speech, "reasons": reasons + ([line] if line else [])})


def not_scanned(reason: str, speech: SpeechScan = "none") -> OutputScan:
    return with_speech(OutputScan(status="not_scanned", reasons=[reason]), speech)


def judge(
    times: Sequence[float],
    scores: Sequence[dict[str, float]],
    model: str,
    settings: ScanSettings,
) -> OutputScan:
    """The verdict on frames at `times` scored `scores`: flagged when any flagged label of any frame
    reaches the threshold; not_scanned when the classifier scores none of the flagged labels (a
    checkpoint with other labels than ScanSettings.flagged_labels names: it could flag nothing)."""
    if len(scores) != len(times):
        return not_scanned(f"the image-safety classifier {model} scored {len(scores)} of {len(times)} frames")
    labels = {label for frame_scores in scores for label in frame_scores}
    if not labels & set(settings.flagged_labels):
        return not_scanned(
            f"the image-safety classifier {model} scores none of the flagged labels "
            f"({', '.join(settings.flagged_labels)}; its labels: {', '.join(sorted(labels)) or 'none'})"
        )
    flagged: list[FrameScores] = []
    counts: Counter[str] = Counter()
    for t, frame_scores in zip(times, scores, strict=True):
        hits = [
            label for label in settings.flagged_labels if frame_scores.get(label, 0.0) >= settings.threshold
        ]
        if hits:
            counts.update(hits)
            clipped = {k: min(1.0, max(0.0, float(v))) for k, v in frame_scores.items()}
            flagged.append(FrameScores(t_s=t, scores=clipped))
    categories = [label for label, _ in counts.most_common()]
    reasons = [
        f"frame at {f.t_s:.2f} s: "
        + ", ".join(f"{c} {f.scores[c]:.2f}" for c in categories if f.scores.get(c, 0) >= settings.threshold)
        + f" (threshold {settings.threshold:g})"
        for f in flagged
    ]
    return OutputScan(
        status="flagged" if flagged else "passed",
        model=model,
        threshold=settings.threshold,
        sampled_s=list(times),
        flagged_frames=flagged,
        categories=categories,
        reasons=reasons,
    )


def scan_video(
    path: Path, classifier: ImageClassifier | None, settings: ScanSettings | None = None
) -> OutputScan:
    """Sample `settings.frames` frames of the video at `path` and judge them with `classifier`;
    not_scanned when there is no classifier (nothing is decoded then)."""
    settings = settings or get_scan_settings()
    if classifier is None:
        return not_scanned(NO_CLASSIFIER)
    try:
        samples = sample_frames(path, settings.frames)
    except Exception as exc:  # the engine's output is what it is; the verdict says it was not scanned
        log.warning("could not sample frames of %s: %s", path.name, exc)
        return not_scanned(f"the video could not be decoded for scanning: {type(exc).__name__}")
    if not samples:
        return not_scanned("the video has no frames to scan")
    times = [t for t, _ in samples]
    try:
        scores = classifier.classify([frame for _, frame in samples])
    except Exception as exc:  # the render stands; the verdict says it was not scanned, and why
        log.exception("image-safety classifier %s failed", classifier.model)
        return not_scanned(f"the image-safety classifier {classifier.model} failed: {type(exc).__name__}")
    return judge(times, scores, classifier.model, settings)


def scan_output(
    outputs: dict[str, Path], classifier: ImageClassifier | None, settings: ScanSettings | None = None
) -> OutputScan:
    """The verdict on a step's outputs: its video's frames; a voice step's audio has no frames, and
    its speech is the request's text (input moderation checked it), so it passes on that ground."""
    video = outputs.get("video")
    if video is not None:
        return scan_video(video, classifier, settings)
    return with_speech(OutputScan(status="passed", reasons=["no frames: an audio output"]), "input_text")
