"""One backend vocabulary: `talkstack api models` (GET /v1/models over real HTTP) and `talkstack
models` (the registry) name the same backend for every model — `lite` or `modal`, where it runs —
and the API says why this stack cannot run a model it lists."""

from __future__ import annotations

import json

import httpx
import pytest
from typer.testing import CliRunner

from talkstack.cli import app

pytestmark = pytest.mark.slow
runner = CliRunner()


def test_api_models_and_models_agree_on_each_backend(pipeline):
    key = pipeline.api_key("free")
    remote = runner.invoke(app, ["api", "models", "--json", "--url", pipeline.api_url, "--key", key])
    local = runner.invoke(app, ["models", "--json"])
    assert remote.exit_code == 0 and local.exit_code == 0, remote.output + local.output
    served = {m["id"]: m for m in json.loads(remote.output)["models"]}
    registry = {m["id"]: m for m in json.loads(local.output)}

    assert {i: m["backend"] for i, m in served.items()} == {i: m["backend"] for i, m in registry.items()}
    assert {m["backend"] for m in served.values()} == {"lite", "modal"}
    # This stack's workers are CPU-only and it has no Modal token: every modal model is listed as
    # unavailable, with the reason and the way to run it.
    for model in served.values():
        if model["backend"] == "modal":
            assert not model["available"], model
            assert "local workers do not run it" in model["unavailable_reason"], model
            assert f"TALKSTACK_MODEL_BACKENDS={model['id']}=modal" in model["unavailable_reason"], model
    assert "no CPU video engine" in served["ltx-video"]["unavailable_reason"]


def test_a_video_request_without_a_model_says_why_it_cannot_run_here(pipeline):
    headers = {"x-api-key": pipeline.api_key("free")}
    answer = httpx.post(
        f"{pipeline.api_url}/v1/video/generate", json={"inputs": {"prompt": "a red kite"}}, headers=headers
    )
    assert answer.status_code == 422, answer.text
    error = answer.json()["error"]
    assert error["code"] == "MODEL_UNAVAILABLE"
    assert error["message"].startswith("options.model: ltx-video is a GPU model (the default for video jobs)")
    assert "there is no CPU video engine" in error["message"] and "docs/gpu-workers.md" in error["message"]
