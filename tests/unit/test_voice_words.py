"""A voice task whose outputs include `words` gets a SpeechTimings JSON uploaded there by the worker
runner, for any voice engine: the engine's own timings when it has them, else the text aligned to
the audio it made (talkstack/workers/words.py)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import httpx
import numpy as np

from talkstack.contract.captions import SpeechTimings, WordTiming
from talkstack.contract.request import VoiceOptions
from talkstack.contract.worker import Markers, OutputUrl, ResultMarker, VoiceTask
from talkstack.engines.base import RenderResult
from talkstack.media.audio import read_audio, write_wav
from talkstack.workers.runner import run_task

TEXT = "Captions need word timings. This sentence has eight words in it."


def put(name: str, content_type: str = "application/json") -> OutputUrl:
    return OutputUrl(url=f"https://s3.test/{name}", key=name, content_type=content_type)


def voice_task(model: str, *, words: bool = True) -> VoiceTask:
    outputs = {"audio": put("speech.wav", "audio/wav")}
    if words:
        outputs["words"] = put("words.json")
    return VoiceTask(
        job_id="job-1",
        attempt_id="voice-1-abcdef0123",
        attempt=1,
        model=model,
        text=TEXT,
        options=VoiceOptions(model=model, language="en"),
        outputs=outputs,
        markers=Markers(progress=put("progress.json"), result=put("result.json"), error=put("error.json")),
        heartbeat_interval_s=10,
        deadline=datetime.now(UTC) + timedelta(hours=1),
    )


def run(task: VoiceTask, step=None) -> dict[str, bytes]:
    """Run the task against a stand-in S3 that keeps what is PUT (the pre-signed URLs' side)."""
    written: dict[str, bytes] = {}

    def s3(request: httpx.Request) -> httpx.Response:
        if request.method == "PUT":
            written[request.url.path.lstrip("/")] = request.read()
            written[f"type:{request.url.path.lstrip('/')}"] = request.headers["content-type"].encode()
            return httpx.Response(200)
        return httpx.Response(404)

    with httpx.Client(transport=httpx.MockTransport(s3)) as client:
        assert run_task(task, client, step=step), written.get("error.json")
    return written


def test_the_lite_voice_uploads_word_timings_aligned_to_its_speech(tmp_path):
    written = run(voice_task("lite-voice"))

    timings = SpeechTimings.model_validate_json(written["words.json"])
    assert written["type:words.json"] == b"application/json"
    assert timings.source == "aligned" and timings.language == "en"
    assert [w.word for w in timings.words] == TEXT.split()
    (tmp_path / "speech.wav").write_bytes(written["speech.wav"])
    clip = read_audio(tmp_path / "speech.wav")
    assert timings.duration_s == clip.info.duration_s
    # The words run in order over the speech: from its first sound to its last.
    loud = np.flatnonzero(np.abs(clip.samples) > 10 ** (-40 / 20)) / clip.sample_rate
    assert abs(timings.words[0].start_s - loud[0]) <= 0.2
    assert abs(timings.words[-1].end_s - loud[-1]) <= 0.2
    starts = [w.start_s for w in timings.words]
    assert starts == sorted(starts) and all(w.end_s >= w.start_s for w in timings.words)
    # The sentence break is the longest silence: "timings." ends before it, "This" starts after it.
    assert timings.words[4].start_s - timings.words[3].end_s > 0.15
    assert ResultMarker.model_validate_json(written["result.json"]).outputs["words"].key == "words.json"


def test_an_engines_own_timings_are_uploaded_as_they_are(tmp_path):
    own = SpeechTimings(
        language="en",
        source="tts",
        duration_s=1.0,
        words=[WordTiming(word=w, start_s=i * 0.1, end_s=i * 0.1 + 0.08) for i, w in enumerate(TEXT.split())],
    )

    def engine(task, inputs, outdir, progress):
        audio = write_wav(outdir / "speech.wav", np.full(16_000, 0.1, dtype=np.float32), 16_000)
        return {"audio": audio}, RenderResult(
            output=audio, bytes=audio.stat().st_size, duration_s=1.0, words=own
        )

    written = run(voice_task("chatterbox"), step=engine)
    assert SpeechTimings.model_validate_json(written["words.json"]) == own


def test_no_words_file_unless_the_task_asks_for_one():
    written = run(voice_task("lite-voice", words=False))
    assert "words.json" not in written
    assert set(ResultMarker.model_validate_json(written["result.json"]).outputs) == {"audio"}
