"""The talkstack-text-safety Modal app as Modal's own client library reads it: imported without
Modal credentials, its class introspected, its image's installs read back from the Dockerfile
commands Modal would build. Nothing is deployed and no image is built here."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest

from talkstack.safety.text_classifier import TEXT_SAFETY_APP, TEXT_SAFETY_CLASS, TEXT_SAFETY_METHOD
from tests.support.modal_introspect import declared, method_names, offline_import, real_class
from tests.unit.test_modal_worker_imports import missing_from, third_party_imports


@pytest.fixture
def text_safety(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[ModuleType]:
    with offline_import(monkeypatch, tmp_path, "modal_workers.text_safety") as module:
        yield module


def test_the_classifier_is_a_gpu_class_on_the_weights_volume_with_no_credentials(text_safety):
    spec = declared(text_safety.app, TEXT_SAFETY_CLASS)
    assert spec.gpu == "L4"
    assert spec.secrets == []  # texts in, probabilities out: it holds nothing
    assert spec.volumes == {"/weights": "talkstack-weights"}
    assert spec.timeout <= 300 and spec.max_containers is not None
    assert method_names(text_safety.app, TEXT_SAFETY_CLASS) == {TEXT_SAFETY_METHOD}


def test_the_pipeline_calls_the_app_class_and_method_that_are_declared(text_safety):
    """What the Moderate step spawns (talkstack/safety/text_classifier.py names it) is what `modal
    deploy` registers: the same lookup tests/support/fake_modal.py serves."""
    real = real_class(TEXT_SAFETY_APP, TEXT_SAFETY_CLASS)
    assert real.methods == (TEXT_SAFETY_METHOD,)
    assert text_safety.app.name == TEXT_SAFETY_APP


def test_the_image_installs_every_module_the_classifier_imports(text_safety):
    # modal_workers.common's function bodies are the GPU render apps' smoke helpers (engines, the
    # quality report), which this container never calls; its top level is walked through settings.
    entries = ["modal_workers.text_safety", "talkstack.safety.text_classifier", "talkstack.settings"]
    modules = third_party_imports(entries, skip={"modal_workers.common"})
    assert {"torch", "transformers"} <= set(modules)  # the walk reaches the scorer's function bodies
    assert missing_from(text_safety.image, modules) == {}
