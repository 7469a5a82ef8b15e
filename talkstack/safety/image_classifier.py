"""An image-safety classifier from a transformers image-classification checkpoint.

The GPU path's classifier (modal_workers/image_safety.py loads it from the weights volume):
Falconsai/nsfw_image_detection, a ViT-base fine-tuned to tell `normal` from `nsfw` (Apache-2.0, code
and weights). Any checkpoint `AutoModelForImageClassification` loads works the same way; its labels
(config.id2label) are the categories the verdict reports, and ScanSettings.flagged_labels names the
unsafe ones. torch and transformers are imported when a classifier is built, not with this module.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

BATCH = 16


class TransformersImageClassifier:
    """`ImageClassifier` (talkstack.safety.scan) over a local checkpoint directory."""

    def __init__(self, checkpoint: Path | str, model: str, device: str | None = None) -> None:
        import torch
        from transformers import AutoImageProcessor, AutoModelForImageClassification

        self.model = model
        self.device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        self.processor: Any = AutoImageProcessor.from_pretrained(str(checkpoint))
        self.network: Any = AutoModelForImageClassification.from_pretrained(str(checkpoint))
        self.network.to(self.device).eval()
        self.labels: dict[int, str] = {int(i): str(n) for i, n in self.network.config.id2label.items()}

    def classify(self, frames: Sequence[np.ndarray]) -> list[dict[str, float]]:
        import torch

        scores: list[dict[str, float]] = []
        for start in range(0, len(frames), BATCH):
            batch = list(frames[start : start + BATCH])
            inputs = self.processor(images=batch, return_tensors="pt").to(self.device)
            with torch.inference_mode():
                probabilities = self.network(**inputs).logits.float().softmax(dim=-1).cpu().numpy()
            scores += [{self.labels[i]: float(p) for i, p in enumerate(row)} for row in probabilities]
        return scores
