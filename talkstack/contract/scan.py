"""The output scan of a job: what an image-safety classifier found in the generated video.

Computed by the worker that produced the job's main output (talkstack/safety/scan.py), carried in
its result marker, and stored as `result.scan` on the job record. A `flagged` output is held for an
operator's review instead of being published; `not_scanned` says so outright (no classifier ran on
this worker), and is never reported as `passed`.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, NonNegativeFloat

from talkstack.contract.fields import StrictModel

ScanStatus = Literal["passed", "flagged", "not_scanned"]
SpeechScan = Literal["input_text", "not_scanned", "none"]

Score = Annotated[float, Field(ge=0, le=1)]


class FrameScores(StrictModel):
    """One sampled frame the classifier flagged, with its score per category."""

    t_s: NonNegativeFloat
    """Where the frame is, in seconds from the start of the video."""
    scores: dict[str, Score]
    """The classifier's probability per category (e.g. `nsfw`, `normal`)."""


class OutputScan(StrictModel):
    """The verdict on a job's main output."""

    version: Literal["1"] = "1"
    status: ScanStatus
    """passed: every sampled frame scored under the threshold in every flagged category; flagged:
    at least one did (the output is held for review); not_scanned: no classifier ran."""
    model: str | None = None
    """The image-safety classifier (a model id, e.g. `Falconsai/nsfw_image_detection`); None when
    nothing was scanned."""
    threshold: Score | None = None
    """A frame is flagged when a flagged category's score reaches this."""
    sampled_s: list[NonNegativeFloat] = Field(default_factory=list)
    """The timestamps of the sampled frames (evenly spaced, first and last included)."""
    flagged_frames: list[FrameScores] = Field(default_factory=list)
    categories: list[str] = Field(default_factory=list)
    """The categories that flagged the output, most frequent first (empty unless flagged)."""
    speech: SpeechScan = "none"
    """input_text: the speech is the request's text, which input moderation checked; not_scanned:
    the speech came from uploaded audio and no speech recognition ran on it; none: no speech."""
    reasons: list[str] = Field(default_factory=list)
    """One line each, for people: why it was flagged, or why it was not scanned."""

    @property
    def category(self) -> str | None:
        """The category a refusal names: the most frequent flagged one."""
        return self.categories[0] if self.categories else None
