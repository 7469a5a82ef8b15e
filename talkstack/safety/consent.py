"""Likeness and voice consent: which requests need an attestation, whether theirs covers it, and
whether a recorded consent clip is speech at all.

- Animating a face from a photo (an avatar job) needs a `likeness` attestation, and cloning a voice
  (any `reference_voice`, avatar or voice job) a `voice` one, unless the medium is one of talkstack's
  bundled samples (public domain or synthetic, see NOTICE), recognised by size and SHA-256 so that
  a renamed copy still counts and an edited one does not.
- The operator may turn the requirement off, and may require a recorded consent clip for voice
  clones (PipelineConfig: `consent_required`, `voice_clone_consent_clip`).
- A clip must decode (PyAV, talkstack.media.audio) and carry speech: 2-120 s long, at least 1 s above
  the silence threshold, with the loud/quiet alternation of speech rather than a steady tone or
  noise, and most of its energy in the speech band. That tells a recording from a placeholder; it
  cannot tell who is speaking or what they said (docs/safety.md).

Pure logic: the pipeline's Validate step and the REST API call it with what they read from S3.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Collection
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, get_args

import numpy as np

from talkstack.contract.composition import AvatarSource, CompositionRequest
from talkstack.contract.consent import ConsentAttestation
from talkstack.contract.request import AvatarRequest, JobRequestBase
from talkstack.errors import ErrorCode, TalkstackError
from talkstack.media.audio import SILENCE_DBFS, frame_levels_dbfs, read_audio
from talkstack.settings import MediaLimits

Need = Literal["likeness", "voice"]
ClipPolicy = Literal["required", "optional"]

# --- bundled samples -------------------------------------------------------------------------------


@dataclass(frozen=True)
class BundledSample:
    path: str
    """Where the file is in the repository (the Lambda bundle carries no media: hence the hashes)."""
    bytes: int
    sha256: str


BUNDLED_SAMPLES: tuple[BundledSample, ...] = (
    # NASA photograph (Eileen Collins), public domain; and its 256×256 crop for the hello example.
    BundledSample(
        "talkstack/assets/samples/portrait.png",
        422355,
        "e51090bfeb7d3f8562b9b5eef784a66003a023f54675083925727adbc072f2b6",
    ),
    BundledSample(
        "docs/examples/hello/portrait.png",
        115268,
        "dd83fb9818f57cdac354aeaf470de3d759bcf717e7449849ac62f94eb8216d1b",
    ),
    # Synthetic speech (espeak-ng): no person's voice.
    BundledSample(
        "talkstack/assets/samples/speech.wav",
        597224,
        "5918817d5c5b2de6da950a25270fc98c758eabf1da8486b38170249aa514c0ba",
    ),
    BundledSample(
        "docs/examples/hello/speech.wav",
        75244,
        "8b0f093d04f186828e2c41b05197434ad5fb611652b9a2e5e3924f7cf85e381a",
    ),
)
"""Media that needs no consent: shipped with talkstack under the licences NOTICE names. A test
checks these against the files."""


def bundled_sample(size: int, read: Callable[[], bytes]) -> BundledSample | None:
    """The bundled sample an object is, or None. `read` (the object's bytes) is called only when the
    size matches a sample's, so ordinary inputs are never downloaded for this."""
    candidates = [s for s in BUNDLED_SAMPLES if s.bytes == size]
    if not candidates:
        return None
    digest = hashlib.sha256(read()).hexdigest()
    return next((s for s in candidates if s.sha256 == digest), None)


# --- what a request needs --------------------------------------------------------------------------


@dataclass(frozen=True)
class ConsentPolicy:
    """The operator's choices (TALKSTACK_CONSENT_REQUIRED, TALKSTACK_VOICE_CLONE_CONSENT_CLIP)."""

    required: bool = True
    voice_clip: ClipPolicy = "optional"


def consent_needed(request: JobRequestBase, bundled: Collection[str]) -> tuple[Need, ...]:
    """The consent scopes `request` needs; `bundled`: the field paths (`inputs.image`, …; a
    composition's `scenes.<i>.source.inputs.image`, …) whose media are bundled samples. A
    composition needs what each avatar scene would as an avatar job."""
    if isinstance(request, CompositionRequest):
        scene_needs: set[Need] = set()
        for index, scene in enumerate(request.scenes):
            if not isinstance(scene.source, AvatarSource):
                continue
            at = f"scenes.{index}.source."
            if f"{at}inputs.image" not in bundled:
                scene_needs.add("likeness")
            if (
                scene.source.inputs.reference_voice is not None
                and f"{at}inputs.reference_voice" not in bundled
            ):
                scene_needs.add("voice")
        return tuple(need for need in get_args(Need) if need in scene_needs)
    needs: list[Need] = []
    if isinstance(request, AvatarRequest) and "inputs.image" not in bundled:
        needs.append("likeness")
    voice = getattr(request.inputs, "reference_voice", None)
    if voice is not None and "inputs.reference_voice" not in bundled:
        needs.append("voice")
    return tuple(needs)


_WHAT = {"likeness": "animating the face in inputs.image", "voice": "cloning inputs.reference_voice"}
_HOW = (
    'add "consent": {"attested_by": who attests, "attested_at": when consent was given (ISO-8601), '
    '"subject": the person, "scope": "%s", "statement" or "statement_id"} (docs/safety.md)'
)


def check_consent(request: JobRequestBase, needed: Collection[Need], policy: ConsentPolicy) -> None:
    """CONSENT_REQUIRED unless `request.consent` covers every needed scope (and, where the operator
    requires it, brings a consent clip for a voice clone). Nothing is required when the operator
    turned the check off."""
    if not policy.required or not needed:
        return
    consent: ConsentAttestation | None = getattr(request, "consent", None)
    missing = [need for need in needed if consent is None or not consent.covers(need)]
    if missing:
        scope = missing[0] if len(needed) == 1 else "both"
        what = " and ".join(_WHAT[need] for need in missing)
        if consent is None:
            message = f"consent: {what} needs a consent attestation; " + _HOW % scope
        else:
            message = (
                f"consent.scope: {consent.scope!r} does not cover {what}; attest scope {scope!r} "
                "for the person it shows (docs/safety.md)"
            )
        raise TalkstackError(ErrorCode.CONSENT_REQUIRED, message, field="consent", missing=missing)
    assert consent is not None
    if "voice" in needed and policy.voice_clip == "required" and consent.clip is None:
        raise TalkstackError(
            ErrorCode.CONSENT_REQUIRED,
            "consent.clip: this stack requires a recorded consent clip for voice clones; add "
            '"clip": an audio or video file of the person speaking their consent (2-120 s)',
            field="consent.clip",
            missing=["clip"],
        )


def attestation_details(consent: ConsentAttestation, job_id: str, clip: str | None) -> dict[str, Any]:
    """What the audit entry `consent.attested` records: what was attested (the scope), when, the
    statement id, and the clip's location; the people's names and the statement's text as SHA-256
    digests. Audit entries outlive a job's deletion and a key's erasure, so they hold no names or
    texts: the job record holds those (and goes with the job); a digest still shows, later, that an
    attestation naming these people was made before the job ran."""
    details: dict[str, Any] = {
        "job_id": job_id,
        "attested_by_sha256": _digest(consent.attested_by),
        "subject_sha256": _digest(consent.subject),
        "scope": consent.scope,
        "attested_at": consent.attested_at.isoformat(),
    }
    if consent.statement_id is not None:
        details["statement_id"] = consent.statement_id
    if consent.statement is not None:
        details["statement_sha256"] = _digest(consent.statement)
    if clip is not None:
        details["clip"] = clip
    return details


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


# --- the consent clip ------------------------------------------------------------------------------

CLIP_MIN_SECONDS = 2.0
CLIP_MAX_SECONDS = 120.0
CLIP_MIN_SPEECH_SECONDS = 1.0
"""Time above the silence threshold (20 ms windows louder than SILENCE_DBFS)."""
CLIP_MIN_DYNAMICS_DB = 12.0
"""Speech alternates syllables and pauses: the 95th and 10th percentiles of its 20 ms levels lie
tens of dB apart. A steady tone, hum or noise stays within a few dB."""
SPEECH_BAND_HZ = (80.0, 4000.0)
CLIP_MIN_SPEECH_BAND_SHARE = 0.5
"""Share of the clip's energy in SPEECH_BAND_HZ; speech carries most of its energy there."""


@dataclass(frozen=True)
class ClipReport:
    duration_s: float
    speech_s: float
    dynamics_db: float
    speech_band_share: float


def _invalid(reason: str, **details: Any) -> TalkstackError:
    return TalkstackError(
        ErrorCode.CONSENT_CLIP_INVALID,
        f"consent.clip: {reason}; give a recording of the person speaking their consent "
        f"({CLIP_MIN_SECONDS:g}-{CLIP_MAX_SECONDS:g} s, WAV, MP3, M4A, MP4, FLAC or OGG)",
        field="consent.clip",
        **details,
    )


def speech_band_share(samples: np.ndarray, rate: int) -> float:
    power = np.abs(np.fft.rfft(samples.astype(np.float64))) ** 2
    freqs = np.fft.rfftfreq(len(samples), 1 / rate)
    total = float(power[1:].sum())
    if total <= 0:
        return 0.0
    low, high = SPEECH_BAND_HZ
    return float(power[(freqs >= low) & (freqs <= high)].sum() / total)


def check_consent_clip(path: Path, limits: MediaLimits) -> ClipReport:
    """The clip's measures, or CONSENT_CLIP_INVALID saying what is wrong with it."""
    clip_limits = limits.model_copy(
        update={"min_audio_seconds": CLIP_MIN_SECONDS, "max_audio_seconds": CLIP_MAX_SECONDS}
    )
    try:
        clip = read_audio(path, clip_limits)
    except TalkstackError as exc:  # undecodable, no audio track, too short or long, silent
        raise _invalid(exc.message, cause=str(exc.code)) from exc
    samples, rate = clip.samples, clip.sample_rate
    levels = frame_levels_dbfs(samples, rate, window_s=0.02)
    report = ClipReport(
        duration_s=round(len(samples) / rate, 3),
        speech_s=round(float(np.count_nonzero(levels > SILENCE_DBFS) * 0.02), 3),
        dynamics_db=round(float(np.percentile(levels, 95) - np.percentile(levels, 10)), 1),
        speech_band_share=round(speech_band_share(samples, rate), 3),
    )
    if report.speech_s < CLIP_MIN_SPEECH_SECONDS:
        raise _invalid(f"only {report.speech_s:g} s of it is above silence", speech_s=report.speech_s)
    if report.dynamics_db < CLIP_MIN_DYNAMICS_DB:
        raise _invalid(
            f"its level barely changes ({report.dynamics_db:g} dB), like a tone or noise, not speech",
            dynamics_db=report.dynamics_db,
        )
    if report.speech_band_share < CLIP_MIN_SPEECH_BAND_SHARE:
        raise _invalid(
            f"only {report.speech_band_share:.0%} of its energy is in the speech band",
            speech_band_share=report.speech_band_share,
        )
    return report
