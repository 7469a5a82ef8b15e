"""`talkstack submit` and `talkstack api submit` refuse, before anything is uploaded, what they can
tell locally: a media file the manifest names that is not beside it, an --image/--audio that does
not exist, and (api submit) a model the API says it cannot run. The S3 drop's stack is replaced by
one that fails the test if it is touched; the API by an httpx transport that records each request."""

from __future__ import annotations

import json
from contextlib import contextmanager
from typing import get_args

import httpx
import pytest
from typer.testing import CliRunner

from talkstack.api.models import ModelLimits, ModelList, ModelView
from talkstack.cli import app, remote
from talkstack.cli import stack as stack_cli
from talkstack.cli.drop import local_media
from talkstack.client import TalkstackClient

runner = CliRunner()
BACKEND = get_args(ModelView.model_fields["backend"].annotation)[0]  # whichever the API names first


@pytest.fixture
def no_stack(monkeypatch):
    """A local stack that must not be reached: the refusal has to come first."""

    def connect(resources):
        raise AssertionError("the stack was contacted before the local checks")

    monkeypatch.setattr(stack_cli, "_connect", connect)


def write_manifest(folder, inputs, **extra):
    folder.mkdir(exist_ok=True)
    path = folder / "job.json"
    path.write_text(json.dumps({"task": "avatar", "inputs": inputs, **extra}))
    return path


def one_line(output: str) -> str:
    lines = [line for line in output.splitlines() if line.strip()]
    assert len(lines) == 1, output
    return lines[0]


def test_submit_refuses_a_manifest_whose_media_is_not_beside_it(no_stack, media, tmp_path):
    folder = tmp_path / "hello"
    folder.mkdir()
    (folder / "face.png").write_bytes(media["portrait"].read_bytes())
    manifest = write_manifest(folder, {"image": "face.png", "audio": "speech.wav"})

    result = runner.invoke(app, ["submit", str(manifest)])

    assert result.exit_code == 2
    line = one_line(result.output)
    assert line.startswith("error [INPUT_NOT_FOUND]: inputs.audio: no file 'speech.wav' in ")
    assert str(folder.resolve()) in line and "nothing was uploaded" in line


def test_submit_refuses_a_missing_image_or_audio_option(no_stack, media, tmp_path):
    missing = tmp_path / "nowhere.wav"
    result = runner.invoke(app, ["submit", "--image", str(media["portrait"]), "--audio", str(missing)])
    assert result.exit_code == 2
    assert one_line(result.output).startswith(f"error [INPUT_NOT_FOUND]: --audio: no file '{missing}'")
    result = runner.invoke(app, ["submit", "--image", str(tmp_path / "no.png"), "--text", "Hello."])
    assert result.exit_code == 2 and "error [INPUT_NOT_FOUND]: --image: no file" in result.output


def test_a_legacy_manifest_names_its_missing_field(no_stack, tmp_path):
    folder = tmp_path / "legacy"
    folder.mkdir()
    (folder / "job.json").write_text(
        json.dumps(
            {
                "input": {"audio_s3_url": "speech.wav", "reference_image_s3_url": "s3://bucket/face.png"},
                "output": {"s3_prefix": "out/"},
            }
        )
    )
    result = runner.invoke(app, ["submit", str(folder / "job.json")])
    assert result.exit_code == 2
    assert "error [INPUT_NOT_FOUND]: input.audio_s3_url: no file 'speech.wav'" in result.output


def test_text_is_not_taken_for_a_file(media, tmp_path):
    """Only media fields are files: a text input that could pass for a key is not looked for."""
    folder = tmp_path / "text"
    folder.mkdir()
    (folder / "face.png").write_bytes(media["portrait"].read_bytes())
    manifest = {"task": "avatar", "inputs": {"image": "face.png", "text": "hello.wav"}}
    assert local_media(manifest, folder) == {"face.png": folder / "face.png"}
    voice = {"task": "voice", "inputs": {"text": "Hello", "reference_voice": "s3://b/v.wav"}}
    assert local_media(voice, folder) == {}


# --- api submit: the model check comes before any upload --------------------------------------------


def model(model_id: str, task: str, *, default: bool, reason: str | None = None) -> ModelView:
    return ModelView(
        id=model_id,
        task=task,
        description=model_id,
        licence="Apache-2.0",
        gpu=reason is not None,
        backend=BACKEND,
        default=default,
        available=reason is None,
        unavailable_reason=reason,
        limits=ModelLimits(),
    )


@pytest.fixture
def fake_api(monkeypatch):
    """The CLI's real TalkstackClient over a transport that answers GET /v1/models with `models`,
    records every request, and refuses uploads (so a submit that gets that far stops there)."""
    state = {"models": [], "requests": []}

    def handle(request: httpx.Request) -> httpx.Response:
        state["requests"].append(f"{request.method} {request.url.path}")
        if request.url.path == "/v1/models":
            return httpx.Response(200, text=ModelList(models=state["models"]).model_dump_json())
        error = {"code": "INVALID_REQUEST", "message": "uploads are closed in this test", "details": {}}
        return httpx.Response(400, json={"error": error})

    @contextmanager
    def client(url, key):
        with TalkstackClient(url, "tsk_test", transport=httpx.MockTransport(handle), max_retries=0) as c:
            yield c

    monkeypatch.setattr(remote, "_client", client)
    return state


def api_submit(*args: str):
    return runner.invoke(app, ["api", "submit", *args, "--key", "tsk_test", "--url", "http://api.test"])


def test_api_submit_refuses_an_unavailable_default_model_before_uploading(fake_api, media):
    fake_api["models"] = [
        model("lite-avatar", "avatar", default=True, reason="mediapipe is not installed"),
        model("lite-voice", "voice", default=True),
    ]
    result = api_submit("--image", str(media["portrait"]), "--audio", str(media["speech_5s"]))

    assert result.exit_code == 2
    assert one_line(result.output) == (
        "error [MODEL_UNAVAILABLE]: options.model: lite-avatar is unavailable on this API: "
        "mediapipe is not installed; nothing was uploaded"
    )
    assert fake_api["requests"] == ["GET /v1/models"]


def test_api_submit_refuses_a_named_model_and_a_text_avatars_voice_model(fake_api, media, tmp_path):
    fake_api["models"] = [
        model("lite-avatar", "avatar", default=True),
        model("multitalk", "avatar", default=False, reason="no Modal token is configured"),
        model("lite-voice", "voice", default=True, reason="espeak-ng is not installed"),
    ]
    folder = tmp_path / "named"
    folder.mkdir()
    (folder / "face.png").write_bytes(media["portrait"].read_bytes())
    (folder / "speech.wav").write_bytes(media["speech_5s"].read_bytes())
    files = {"image": "face.png", "audio": "speech.wav"}
    result = api_submit(str(write_manifest(folder, files, options={"model": "multitalk"})))
    assert result.exit_code == 2
    assert "error [MODEL_UNAVAILABLE]: options.model: multitalk is unavailable" in result.output

    result = api_submit(str(write_manifest(folder, files, options={"model": "nope"})))
    assert result.exit_code == 2
    assert "error [INVALID_REQUEST]: options.model: this API has no model 'nope'" in result.output

    result = api_submit("--image", str(media["portrait"]), "--text", "Hello there.")
    assert result.exit_code == 2
    assert "error [MODEL_UNAVAILABLE]: options.voice.model: lite-voice is unavailable" in result.output
    assert set(fake_api["requests"]) == {"GET /v1/models"}


def test_api_submit_uploads_when_the_model_is_available(fake_api, media):
    fake_api["models"] = [model("lite-avatar", "avatar", default=True)]
    result = api_submit("--image", str(media["portrait"]), "--audio", str(media["speech_5s"]))
    assert fake_api["requests"] == ["GET /v1/models", "POST /v1/uploads"]
    assert result.exit_code == 2 and "uploads are closed in this test" in result.output


def test_api_submit_refuses_a_missing_file_before_any_request(fake_api, tmp_path):
    manifest = write_manifest(tmp_path / "gone", {"image": "face.png", "audio": "speech.wav"})
    result = api_submit(str(manifest))
    assert result.exit_code == 2 and "error [INPUT_NOT_FOUND]: inputs.audio: no file" in result.output
    assert fake_api["requests"] == []
