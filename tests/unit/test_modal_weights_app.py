"""The `talkstack-weights` Modal app as declared: imported with no Modal credentials, read back
through tests/support/modal_introspect.py (nothing is deployed or run)."""

from __future__ import annotations

import importlib
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest

from modal_workers.common import HF_SECRET, WEIGHTS_DIR, WEIGHTS_VOLUME
from tests.support.modal_introspect import declared


def _fresh_import() -> ModuleType:
    sys.modules.pop("modal_workers.weights", None)
    return importlib.import_module("modal_workers.weights")


@pytest.fixture
def no_modal_credentials(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[None]:
    for name in ("MODAL_TOKEN_ID", "MODAL_TOKEN_SECRET", "TALKSTACK_HF_SECRET"):
        monkeypatch.delenv(name, raising=False)
    # If a broken check ever lets a call through to Modal, it must fail at once here, not reach
    # api.modal.com or wait on it: Modal reads MODAL_SERVER_URL on every lookup, so the call goes to
    # a closed local port (9, discard) and is refused. MODAL_CONFIG_PATH (no file there: no profile,
    # no token) covers whatever reads Modal's config file afresh, a child `modal` process included.
    monkeypatch.setenv("MODAL_CONFIG_PATH", str(tmp_path / "modal.toml"))
    monkeypatch.setenv("MODAL_SERVER_URL", "http://127.0.0.1:9")
    yield
    sys.modules.pop("modal_workers.weights", None)  # the next import sees the default environment


def test_the_app_imports_without_credentials_and_declares_a_cpu_download_function(
    no_modal_credentials: None,
) -> None:
    module = _fresh_import()

    assert module.app.name == "talkstack-weights"
    fn = declared(module.app, "download_models")
    assert not fn.gpu  # a CPU container: downloading needs no accelerator
    assert fn.volumes == {WEIGHTS_DIR: WEIGHTS_VOLUME}
    assert fn.secrets == []  # every catalogued repository is public: no secret that must exist
    assert fn.timeout >= 3 * 3600  # ~200 GB


def test_the_hugging_face_secret_is_attached_only_when_asked_for(
    no_modal_credentials: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TALKSTACK_HF_SECRET", "1")

    module = _fresh_import()

    assert declared(module.app, "download_models").secrets == [HF_SECRET]


def test_main_refuses_an_unknown_model_before_anything_starts_on_modal(no_modal_credentials: None) -> None:
    module = _fresh_import()

    # `modal run -m modal_workers.weights --models …`: the entrypoint Modal registered, called as
    # `modal run` calls it. With no credentials here, reaching `download_models.remote` would fail
    # with Modal's auth error instead: the typo is caught first, and costs nothing.
    assert type(module.main).__name__ == "LocalEntrypoint"
    with pytest.raises(ValueError, match=r"unknown model id.*sora"):
        module.main.info.raw_f(models="multitalk,sora")


def test_one_download_runs_at_a_time(no_modal_credentials: None) -> None:
    # Two runs would write the same files of the weights volume.
    assert declared(_fresh_import().app, "download_models").max_containers == 1
