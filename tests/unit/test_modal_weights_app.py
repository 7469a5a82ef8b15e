"""The `talkstack-weights` Modal app as declared: imported with no Modal credentials, read back
through tests/support/modal_introspect.py (nothing is deployed or run)."""

from __future__ import annotations

import importlib
import inspect
import sys
from collections.abc import Iterator
from types import ModuleType

import pytest

from modal_workers.common import HF_SECRET, WEIGHTS_DIR, WEIGHTS_VOLUME
from tests.support.modal_introspect import declared


def _fresh_import() -> ModuleType:
    sys.modules.pop("modal_workers.weights", None)
    return importlib.import_module("modal_workers.weights")


@pytest.fixture
def no_modal_credentials(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    for name in ("MODAL_TOKEN_ID", "MODAL_TOKEN_SECRET", "TALKSTACK_HF_SECRET"):
        monkeypatch.delenv(name, raising=False)
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
    assert fn.image is not None


def test_the_hugging_face_secret_is_attached_only_when_asked_for(
    no_modal_credentials: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TALKSTACK_HF_SECRET", "1")

    module = _fresh_import()

    assert declared(module.app, "download_models").secrets == [HF_SECRET]


def test_main_is_the_one_command_entrypoint(no_modal_credentials: None) -> None:
    module = _fresh_import()

    # `modal run -m modal_workers.weights --models all [--pinned-only]`: unpinned repositories
    # (MeiGen-MultiTalk) are fetched and locked unless refused, so `all` fills what the engines load.
    assert type(module.main).__name__ == "LocalEntrypoint"
    params = inspect.signature(module.main.info.raw_f).parameters
    assert (params["models"].default, params["pinned_only"].default) == ("all", False)
    remote = inspect.signature(module.download_models._raw_f_).parameters  # the undecorated function
    assert remote["allow_unpinned"].default is True
    with pytest.raises(ValueError, match="unknown model id"):
        module.weights.resolve_models("multitalk,sora")  # main validates before starting anything


def test_one_download_runs_at_a_time(no_modal_credentials: None) -> None:
    # Two runs would write the same files of the weights volume.
    assert declared(_fresh_import().app, "download_models").max_containers == 1
