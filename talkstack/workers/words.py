"""The word timings a voice step writes beside its audio (output role `words`, words.json).

Composition scenes ask for them (captions are cut from them). An engine that knows when it spoke
each word returns them on its RenderResult (source "tts"); for every other engine the task's text is
aligned to the audio it produced (talkstack/media/alignment.py, source "aligned"). The lite voice is
aligned too: espeak-ng reports word positions only through its library API, which talkstack does
not link (it runs espeak-ng as a separate program; docs/captions.md).
"""

from __future__ import annotations

from pathlib import Path

from talkstack.contract.captions import SpeechTimings
from talkstack.contract.worker import WorkerTask
from talkstack.engines.base import RenderResult

WORDS_ROLE = "words"
WORDS_FILE = "words.json"


def speech_timings(task: WorkerTask, produced: dict[str, Path], render: RenderResult) -> SpeechTimings:
    """The engine's own timings, else the task's text aligned to the speech it produced."""
    language = getattr(task.options, "language", None) or "en"
    if render.words is not None:
        return render.words
    speech = produced.get("audio") or produced.get("video")
    if speech is None or not task.text:
        raise RuntimeError("words were asked for, but the step produced no speech with a text to time")
    from talkstack.media.alignment import align_words  # librosa: only for steps that need it

    return align_words(speech, task.text, language)


def write_words(task: WorkerTask, produced: dict[str, Path], render: RenderResult, outdir: Path) -> Path:
    path = outdir / WORDS_FILE
    path.write_text(speech_timings(task, produced, render).model_dump_json(), encoding="utf-8")
    return path
