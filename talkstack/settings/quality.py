"""The "quality" group: thresholds of the quality report every avatar job gets (docs/quality.md).

Read by the workers (which measure) and by the pipeline (which decides to re-render a parallel
chunk once); one class so both sides judge a video by the same numbers.
"""

from __future__ import annotations

from functools import lru_cache

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class QualityThresholds(BaseSettings):
    """Pass marks of the avatar quality report. A check that cannot be measured (no face found, no
    speech) is reported as not measured and never fails a job."""

    model_config = SettingsConfigDict(
        env_prefix="TALKSTACK_QUALITY_", frozen=True, use_attribute_docstrings=True
    )

    min_lipsync: float = Field(0.3, ge=-1, le=1)
    """Lowest lip-sync score (correlation of speech energy and mouth opening, -1…1) that passes."""
    max_identity_drift: float = Field(0.15, ge=0)
    """Highest identity drift (face geometry and colour vs the reference photo, 0 = identical)."""
    max_colour_drift: float = Field(6.0, ge=0)
    """Highest colour drift of the face region, as a CIE ΔE76 distance (≈2.3 is just noticeable)."""
    max_av_offset_s: float = Field(0.08, ge=0)
    """Largest difference between the video and audio track durations, in seconds (2 frames at 25 fps)."""
    rerender_chunks: bool = True
    """Render a parallel avatar chunk once more when its report fails, before stitching."""


@lru_cache(maxsize=1)
def get_quality_thresholds() -> QualityThresholds:
    return QualityThresholds()
