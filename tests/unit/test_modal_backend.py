"""The `modal` worker backend against Modal's real client library, with Modal's control plane faked
at the network boundary (tests/support/fake_modal.py): the gRPC server is the only fake. Each
"deployed" class is the real one of modal_workers/ (its parameter schema and methods, as `modal
deploy` registers them), and each spawn's parameters are what a container of that class builds."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import boto3
import pytest
from moto import mock_aws

from talkstack.contract.worker import (
    AvatarTask,
    ChunkPlan,
    Markers,
    OutputUrl,
    StitchOptions,
    StitchTask,
    VideoTask,
    VoiceTask,
    WorkerTask,
    parse_worker_task,
)
from talkstack.engines.registry import STITCH_MODEL, get_model, list_models, modal_target
from talkstack.errors import ErrorCode, TalkstackError
from talkstack.pipeline.backends import MODAL_TOKEN_PLACEHOLDER, ModalBackend, ModalToken, read_modal_token
from tests.support.fake_modal import FakeModal
from tests.support.matte import matte_task


def _task(model: str = "multitalk") -> WorkerTask:
    put = OutputUrl(url="http://127.0.0.1:9/put", key="k", content_type="application/json")
    if model == STITCH_MODEL:
        chunk = ChunkPlan(index=0, start_s=0, end_s=5, render_start_s=0, render_end_s=5, at_pause=True)
        return StitchTask(
            job_id="job-1",
            attempt_id="stitch-1-abc",
            attempt=1,
            model=model,
            options=StitchOptions(chunks=[chunk]),
            outputs={"video": put},
            markers=Markers(progress=put, result=put, error=put),
            heartbeat_interval_s=10,
            deadline=datetime.now(UTC) + timedelta(hours=1),
        )
    if get_model(model).task == "matte":
        return matte_task(model)
    kind = {"avatar": AvatarTask, "video": VideoTask, "voice": VoiceTask}[get_model(model).task]
    return kind(
        job_id="job-1",
        attempt_id=f"{kind.model_fields['step'].default}-1-abc",
        attempt=1,
        model=model,
        options={"model": model, "seed": 7} if kind is not VoiceTask else {"model": model},
        outputs={"video": put},
        markers=Markers(progress=put, result=put, error=put),
        heartbeat_interval_s=10,
        deadline=datetime.now(UTC) + timedelta(hours=1),
    )


@pytest.fixture
def fake(fake_modal: FakeModal) -> FakeModal:
    return fake_modal


TOKEN = ModalToken(token_id="ak-test", token_secret="as-test")


def test_spawn_sends_the_task_document_to_the_models_deployed_class(fake: FakeModal) -> None:
    received: list[dict] = []
    fake.deploy("talkstack-avatar", "MultiTalk", container=received.append, environment="prod")

    task = _task()
    call_id = ModalBackend(TOKEN, environment="prod").submit(task)

    assert call_id.startswith("modal:fc-")
    [spawned] = fake.spawned
    assert (spawned.app, spawned.cls, spawned.method) == ("talkstack-avatar", "MultiTalk", "run")
    assert spawned.payload == json.loads(task.model_dump_json())
    assert parse_worker_task(spawned.payload).attempt_id == "avatar-1-abc"
    assert call_id == f"modal:{spawned.call_id}"
    assert spawned.parameters == {"turbo": False}


@pytest.mark.parametrize("cls_name", ["MultiTalk", "InfiniteTalk"])
def test_turbo_avatars_go_to_the_turbo_containers(fake: FakeModal, cls_name: str) -> None:
    model = {"MultiTalk": "multitalk", "InfiniteTalk": "infinitetalk"}[cls_name]
    fake.deploy("talkstack-avatar", cls_name)
    task = _task(model)
    turbo = task.model_copy(update={"options": task.options.model_copy(update={"turbo": True})})
    ModalBackend(TOKEN).submit(turbo)
    ModalBackend(TOKEN).submit(task)
    # What each container's instance holds, built by Modal's container code from the bound parameters.
    assert [s.parameters for s in fake.spawned] == [{"turbo": True}, {"turbo": False}]


MODAL_MODELS = [m.id for m in list_models() if m.modal_class] + [STITCH_MODEL]


@pytest.mark.parametrize("model", MODAL_MODELS)
def test_every_modal_model_reaches_its_class_with_parameters_the_class_declares(
    fake: FakeModal, model: str
) -> None:
    """Each model's task, spawned on the real class the registry names: Modal's client checks and
    encodes the parameters against that class's own schema, and a container of it is built from them."""
    app_name, cls_name = modal_target(model)
    fake.deploy(app_name, cls_name)
    ModalBackend(TOKEN).submit(_task(model))
    [spawned] = fake.spawned
    assert (spawned.app, spawned.cls, spawned.method) == (app_name, cls_name, "run")
    expected = {"turbo": False} if model in ("multitalk", "infinitetalk") else {}
    assert spawned.parameters == expected


def test_each_model_goes_to_its_own_class(fake: FakeModal) -> None:
    fake.deploy("talkstack-video", "LTXVideo")
    fake.deploy("talkstack-voice", "Chatterbox")
    backend = ModalBackend(TOKEN)
    backend.submit(_task("ltx-video"))
    backend.submit(_task("chatterbox"))
    assert [(s.app, s.cls) for s in fake.spawned] == [
        ("talkstack-video", "LTXVideo"),
        ("talkstack-voice", "Chatterbox"),
    ]


def test_an_app_that_is_not_deployed_says_how_to_deploy_it(fake: FakeModal) -> None:
    with pytest.raises(TalkstackError) as caught:
        ModalBackend(TOKEN).submit(_task("infinitetalk"))
    assert caught.value.code == ErrorCode.MODEL_UNAVAILABLE
    assert "modal deploy -m modal_workers.avatar" in caught.value.message
    assert fake.spawned == []


def test_a_refused_token_is_model_unavailable(fake: FakeModal) -> None:
    fake.deploy("talkstack-avatar", "MultiTalk")
    wrong = ModalToken(token_id="ak-other", token_secret="as-nope")
    with pytest.raises(TalkstackError) as caught:
        ModalBackend(wrong).submit(_task())
    assert caught.value.code == ErrorCode.MODEL_UNAVAILABLE
    assert "refused" in caught.value.message


def test_lite_models_have_no_modal_class() -> None:
    with pytest.raises(TalkstackError) as caught:
        ModalBackend(TOKEN).submit(_task("lite-avatar"))
    assert caught.value.code == ErrorCode.MODEL_UNAVAILABLE


@mock_aws
def test_the_token_comes_from_secrets_manager() -> None:
    secrets = boto3.client("secretsmanager", region_name="us-east-1")
    arn = secrets.create_secret(
        Name="talkstack/modal", SecretString=json.dumps({"token_id": "ak-1", "token_secret": "as-1"})
    )["ARN"]
    token = read_modal_token(arn, secrets)
    assert token.token_id.get_secret_value() == "ak-1"
    assert "as-1" not in repr(token)  # never logged by accident

    for secret_id, body in (
        (None, None),
        ("missing", None),
        ("bad", "not json"),
        ("partial", '{"token_id": "x"}'),
    ):
        if body is not None:
            secrets.create_secret(Name=secret_id, SecretString=body)
        with pytest.raises(TalkstackError) as caught:
            read_modal_token(secret_id, secrets)
        assert caught.value.code == ErrorCode.MODEL_UNAVAILABLE
        assert "TALKSTACK_MODAL_TOKEN_SECRET" in caught.value.message

    # What the CDK stack's secret holds until the deployer stores a token (a generated secret beside
    # the placeholder id): refused here, naming the fix, instead of reaching Modal.
    placeholder = json.dumps({"token_id": MODAL_TOKEN_PLACEHOLDER, "token_secret": "Xq3v9generated"})
    secrets.create_secret(Name="talkstack/modal-token", SecretString=placeholder)
    with pytest.raises(TalkstackError) as caught:
        read_modal_token("talkstack/modal-token", secrets)
    assert caught.value.code == ErrorCode.MODEL_UNAVAILABLE
    assert "still holds the stack's placeholder" in caught.value.message


def test_cancel_stops_the_spawned_call(fake: FakeModal) -> None:
    fake.deploy("talkstack-avatar", "MultiTalk")
    call_id = ModalBackend(TOKEN).submit(_task())
    native = call_id.removeprefix("modal:")
    ModalBackend(TOKEN).cancel(native)
    assert fake.cancelled == [native]


def test_backends_cancel_routes_by_the_call_id_prefix(fake: FakeModal) -> None:
    from types import SimpleNamespace

    from talkstack.pipeline.backends import Backends

    with mock_aws():
        secrets = boto3.client("secretsmanager", region_name="us-east-1")
        body = json.dumps({"token_id": "ak-test", "token_secret": "as-test"})
        arn = secrets.create_secret(Name="modal-token", SecretString=body)["ARN"]
        config = SimpleNamespace(modal_token_secret=arn, modal_environment=None)
        backends = Backends(config, lambda: secrets)
        assert backends.cancel("local:avatar-1-abc") is False  # local workers stop on the cancel flag
        fake.deploy("talkstack-avatar", "MultiTalk")
        call_id = ModalBackend(TOKEN).submit(_task())
        assert backends.cancel(call_id) is True
    assert fake.cancelled == [call_id.removeprefix("modal:")]
