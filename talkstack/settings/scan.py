"""The "scan" group: how the worker that produced a job's video scans it (docs/safety.md).

Read by the workers, which sample and classify the frames; the GPU workers get these variables
where `modal deploy` runs, like the quality report's pass marks. What finalize does with an output
no classifier scanned is the pipeline's setting `TALKSTACK_SCAN_NOT_SCANNED`.
"""

from __future__ import annotations

from functools import lru_cache

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class ScanSettings(BaseSettings):
    """Output scanning: frames sampled from every generated video, classified for unsafe content."""

    model_config = SettingsConfigDict(
        env_prefix="TALKSTACK_SCAN_", frozen=True, use_attribute_docstrings=True
    )

    frames: int = Field(8, ge=2, le=200)
    """Frames sampled from each video: evenly spaced, the first and the last included."""
    threshold: float = Field(0.5, gt=0, le=1)
    """A frame is flagged when the classifier's score of a flagged label reaches this (0…1)."""
    flagged_labels: list[str] = Field(default_factory=lambda: ["nsfw"])
    """The classifier's labels that count as unsafe (Falconsai/nsfw_image_detection: `nsfw`)."""
    gpu_classifier: bool = True
    """GPU workers on Modal call the image-safety app; off: their outputs are marked not scanned."""


@lru_cache(maxsize=1)
def get_scan_settings() -> ScanSettings:
    return ScanSettings()
