"""The talkstack-image-safety Modal app as Modal's client library reads it (no credentials, nothing
deployed), and the GPU workers' path to it: frames sampled from a real MP4, sent as JPEG through the
RemoteImageClassifier to the ImageSafety class's own `classify` body (the Modal call substituted at
its boundary), scored by a real transformers classifier (a tiny ViT from a config)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from types import ModuleType, SimpleNamespace
from typing import Any

import numpy as np
import pytest

from talkstack.media.video import Mp4Writer
from talkstack.safety.image_classifier import TransformersImageClassifier
from talkstack.safety.scan import scan_video
from talkstack.settings.scan import ScanSettings
from tests.support.modal_introspect import declared, method_names, offline_import
from tests.unit.test_output_scan import tiny_vit


@pytest.fixture
def safety(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[ModuleType]:
    with offline_import(monkeypatch, tmp_path, "modal_workers.image_safety") as module:
        yield module


def test_the_class_is_a_gpu_class_reading_the_weights_volume(safety):
    spec = declared(safety.app, "ImageSafety")

    assert spec.gpu == "T4" and spec.volumes == {"/weights": "talkstack-weights"}
    assert method_names(safety.app, "ImageSafety") == {"classify"}
    assert safety.app.name == "talkstack-image-safety"


def test_gpu_workers_scan_through_the_deployed_class(safety, tmp_path):
    video = tmp_path / "video.mp4"
    with Mp4Writer(video, 64, 64) as writer:
        for index in range(25):
            writer.write(np.full((64, 64, 3), 8 * index, dtype=np.uint8))
    # The container as Modal would run it: the class's own methods, its classifier a tiny ViT that
    # finds everything unsafe (the real weights are not here).
    container: Any = safety.ImageSafety._get_user_cls()()
    container.classifier = TransformersImageClassifier(tiny_vit(tmp_path, nsfw_bias=6.0), model=safety.REPO)
    from modal._partial_function import _find_callables_for_obj, _PartialFunctionFlags

    method = _find_callables_for_obj(container, _PartialFunctionFlags.CALLABLE_INTERFACE)["classify"]
    sent: list[list[bytes]] = []

    def remote(frames: list[bytes]) -> list[dict[str, float]]:
        sent.append(frames)
        return method(frames)

    deployed = SimpleNamespace(classify=SimpleNamespace(remote=remote))
    classifier = safety.RemoteImageClassifier(lambda: deployed)

    scan = scan_video(video, classifier, ScanSettings(frames=3, threshold=0.5))

    assert scan.status == "flagged" and scan.model == "Falconsai/nsfw_image_detection"
    assert len(sent) == 1 and len(sent[0]) == 3 and all(f[:2] == b"\xff\xd8" for f in sent[0])  # JPEGs


def test_the_workers_have_no_classifier_when_the_operator_turns_it_off(safety, monkeypatch):
    from talkstack.settings import scan

    monkeypatch.setattr(scan, "get_scan_settings", lambda: ScanSettings(gpu_classifier=False))
    monkeypatch.setattr(safety, "get_scan_settings", lambda: ScanSettings(gpu_classifier=False))

    assert safety.worker_classifier() is None
