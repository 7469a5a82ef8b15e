"""The quality report of an avatar video: what was measured, against which pass mark.

Computed by the worker that rendered the video (talkstack/media/quality.py), carried in its result
marker, stored on the job record's result and sent in `job.completed`. No hosted avatar service
reports this; it is how a user (and the pipeline, for parallel chunks) tells a good render from a
drifting one without watching it.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, NonNegativeFloat, NonNegativeInt

from talkstack.contract.fields import StrictModel

QualityCheckName = Literal["lipsync", "identity", "colour", "frames", "av_sync"]


class QualityCheck(StrictModel):
    """One measure against its pass mark (talkstack.settings.quality.QualityThresholds)."""

    name: QualityCheckName
    value: float | None
    """None when it could not be measured (no face found, silent speech)."""
    threshold: float
    passed: bool | None
    """None when not measured: such a check never fails a job."""
    detail: str | None = None


class QualityReport(StrictModel):
    version: Literal["1"] = "1"
    lipsync: float | None = None
    """Correlation (-1…1) of the speech energy envelope and the mouth opening, at the best lag."""
    lipsync_lag_s: float | None = None
    """The lag of that best correlation (positive: the mouth follows the sound)."""
    identity_drift: float | None = None
    """Face landmark geometry and colour vs the reference photo; 0 = identical."""
    colour_drift: float | None = None
    """Largest ΔE76 of the face region's mean colour between chunks (or across the video)."""
    frames: NonNegativeInt
    expected_frames: NonNegativeInt
    av_offset_s: float
    """Video track duration minus audio track duration."""
    faces_found: float = Field(ge=0, le=1)
    """Share of the sampled frames in which a face was found."""
    sampled_frames: NonNegativeInt
    seconds: NonNegativeFloat = 0.0
    """Time spent measuring."""
    checks: list[QualityCheck] = Field(default_factory=list)
    passed: bool
    """Every measured check passed."""
