"""Output scanning (talkstack/safety/scan.py) on a real MP4 encoded with ffmpeg: frames sampled
evenly with the first and last included, judged by a real transformers image classifier (a tiny
ViT built from a config, its head biased so the verdict is known), and never `passed` without one."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from talkstack.media.video import Mp4Writer
from talkstack.safety.image_classifier import TransformersImageClassifier
from talkstack.safety.scan import sample_frames, sample_times, scan_output, scan_video
from talkstack.settings.scan import ScanSettings

FPS, SECONDS = 25, 2


@pytest.fixture(scope="module")
def video(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """2 s at 25 fps, each frame a flat grey whose level is its frame number (to tell frames apart)."""
    path = tmp_path_factory.mktemp("scan") / "video.mp4"
    with Mp4Writer(path, 64, 64, fps=FPS) as writer:
        for index in range(FPS * SECONDS):
            writer.write(np.full((64, 64, 3), 4 * index, dtype=np.uint8))
    return path


def tiny_vit(root: Path, nsfw_bias: float) -> Path:
    """A 1-layer ViT with labels normal/nsfw whose head ignores the image: softmax of the bias."""
    import torch
    from transformers import ViTConfig, ViTForImageClassification, ViTImageProcessor

    config = ViTConfig(
        image_size=32,
        patch_size=16,
        hidden_size=32,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=37,
        num_labels=2,
        id2label={0: "normal", 1: "nsfw"},
        label2id={"normal": 0, "nsfw": 1},
    )
    torch.manual_seed(0)
    model = ViTForImageClassification(config)
    with torch.no_grad():
        model.classifier.weight.zero_()
        model.classifier.bias.copy_(torch.tensor([0.0, nsfw_bias]))
    folder = root / f"vit-{nsfw_bias:+g}"
    model.save_pretrained(folder)
    ViTImageProcessor(size={"height": 32, "width": 32}).save_pretrained(folder)
    return folder


def test_frames_are_sampled_evenly_first_and_last_included(video):
    samples = sample_frames(video, 5)

    times = [t for t, _ in samples]
    assert times[0] == 0.0 and times[-1] == pytest.approx((FPS * SECONDS - 1) / FPS)
    assert times[1:-1] == pytest.approx([0.52, 1.0, 1.52])  # the first frame at or past 0.5, 1.0, 1.5 s
    # Each sample is the decoded frame at that time (grey level 4 × frame number, give or take the codec).
    for t, frame in samples:
        assert abs(float(frame.mean()) - 4 * round(t * FPS)) < 3
    assert sample_times(2.0, 3) == [0.0, 1.0, 2.0]


def test_a_plain_video_passes_a_classifier_that_finds_it_normal(video, tmp_path):
    classifier = TransformersImageClassifier(tiny_vit(tmp_path, nsfw_bias=-6.0), model="tiny-vit")

    scan = scan_video(video, classifier, ScanSettings(frames=4, threshold=0.5))

    assert scan.status == "passed" and scan.model == "tiny-vit" and len(scan.sampled_s) == 4
    assert scan.flagged_frames == [] and scan.categories == []


def test_a_video_the_classifier_scores_unsafe_is_flagged_with_its_scores(video, tmp_path):
    classifier = TransformersImageClassifier(tiny_vit(tmp_path, nsfw_bias=6.0), model="tiny-vit")

    scan = scan_video(video, classifier, ScanSettings(frames=3, threshold=0.9))

    assert scan.status == "flagged" and scan.categories == ["nsfw"]
    assert [f.t_s for f in scan.flagged_frames] == scan.sampled_s
    assert all(f.scores["nsfw"] > 0.99 for f in scan.flagged_frames)
    assert scan.reasons[0].startswith("frame at 0.00 s: nsfw 1.00")


def test_without_a_classifier_the_output_is_not_scanned_never_passed(video):
    scan = scan_output({"video": video, "thumbnail": video}, None)

    assert scan.status == "not_scanned" and scan.model is None and scan.reasons


def test_a_failing_classifier_leaves_the_output_not_scanned(video):
    class Broken:
        model = "broken"

        def classify(self, frames):
            raise RuntimeError("CUDA out of memory")

    scan = scan_video(video, Broken(), ScanSettings(frames=2))

    assert scan.status == "not_scanned" and "broken failed: RuntimeError" in scan.reasons[0]


def test_a_classifier_without_the_flagged_labels_leaves_the_output_not_scanned(video, tmp_path):
    # A checkpoint whose labels are not the ones TALKSTACK_SCAN_FLAGGED_LABELS names could flag
    # nothing: its verdict must not read `passed`.
    classifier = TransformersImageClassifier(tiny_vit(tmp_path, nsfw_bias=6.0), model="tiny-vit")

    scan = scan_video(video, classifier, ScanSettings(frames=2, flagged_labels=["porn", "hentai"]))

    assert scan.status == "not_scanned"
    assert "scores none of the flagged labels (porn, hentai; its labels: normal, nsfw)" in scan.reasons[0]


def test_a_classifier_answering_for_fewer_frames_leaves_the_output_not_scanned(video):
    # A short answer (a truncated batch) would leave frames unjudged: not scanned, not a retry.
    class Short:
        model = "short"

        def classify(self, frames):
            return [{"normal": 0.9, "nsfw": 0.1}]

    scan = scan_video(video, Short(), ScanSettings(frames=3))

    assert scan.status == "not_scanned" and "scored 1 of 3 frames" in scan.reasons[0]
