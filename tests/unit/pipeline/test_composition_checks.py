"""A composition at the Validate and Moderate steps: every file in its scenes is checked like any
input (present, the namespace's, within its limit) and must be the kind its place takes, refusals
name the scene's field; an avatar scene's photo needs consent as an avatar job's does; every text
the video shows or speaks is moderated. Real step code, the real JobStore and AuditLog on moto's
DynamoDB, the bundled samples as media."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from talkstack.contract.record import JobRecord, JobSource
from talkstack.errors import ErrorCode, TalkstackError
from talkstack.pipeline.audit import AuditLog
from talkstack.pipeline.moderate import moderate_job
from talkstack.pipeline.validate import open_job
from talkstack.safety.policy import request_texts
from talkstack.settings.moderation import get_moderation_settings
from tests.support.consent import user_photo_bytes, with_consent
from tests.support.fakes import FakeS3
from tests.support.steps import INPUT, JOBS_TABLE, SAMPLES

EXECUTION = "arn:aws:states:us-east-1:123456789012:execution:jobs:"
FOLDER = "inputs/film"


@pytest.fixture
def audit(ddb: Any) -> AuditLog:
    return AuditLog(JOBS_TABLE, ddb)


@pytest.fixture
def media(s3: FakeS3) -> None:
    """The drop folder: the bundled portrait, a user's photo, a clip, a song, and a text file."""
    files = {
        "portrait.png": ((SAMPLES / "portrait.png").read_bytes(), "image/png"),
        "me.png": (user_photo_bytes(), "image/png"),
        "clip.mp4": (b"\x00\x00\x00\x18ftypmp42" + b"\x00" * 64, "video/mp4"),
        "song.mp3": (b"ID3" + b"\x00" * 64, "audio/mpeg"),
        "notes.txt": (b"not media", "text/plain"),
        "upload": ((SAMPLES / "speech.wav").read_bytes(), "audio/wav"),  # no extension: its type says
    }
    for name, (body, content_type) in files.items():
        s3.put_object(Bucket=INPUT, Key=f"{FOLDER}/{name}", Body=body, ContentType=content_type)


def envelope(request: dict[str, Any]) -> dict[str, Any]:
    return {"request": request, "source": {"kind": "s3", "bucket": INPUT, "key": f"{FOLDER}/job.json"}}


def film(*scenes: dict[str, Any], **changes: Any) -> dict[str, Any]:
    return {"task": "composition", "scenes": list(scenes), **changes}


AVATAR = {"source": {"type": "avatar", "inputs": {"image": "portrait.png", "text": "Hello there."}}}
TITLE = {"source": {"type": "title", "title": "Chapter one"}}


def refused(request: dict[str, Any], config, store, s3, audit) -> TalkstackError:
    with pytest.raises(TalkstackError) as caught:
        open_job(envelope(request), "job-1", EXECUTION + "job-1", config, store, s3, audit)
    assert store.get("job-1") is None
    return caught.value


def test_a_valid_composition_is_accepted_with_its_scene_media_resolved(config, store, s3, media, audit):
    request = film(
        AVATAR,
        {
            "source": {"type": "media", "media": "clip.mp4"},
            "background": {"type": "image", "media": "portrait.png"},
            "music": {"media": "upload"},
        },
        options={"music": {"media": "song.mp3"}},
    )
    record, created = open_job(envelope(request), "job-1", EXECUTION + "job-1", config, store, s3, audit)
    assert created and record.request.task == "composition"
    assert str(record.request.scenes[1].source.media) == f"s3://{INPUT}/{FOLDER}/clip.mp4"
    assert str(record.request.options.music.media) == f"s3://{INPUT}/{FOLDER}/song.mp3"


@pytest.mark.parametrize(
    ("scene", "options", "field", "wanted"),
    [
        ({"source": {"type": "media", "media": "notes.txt"}}, {}, "scenes[1].source.media", "an image"),
        ({"source": {"type": "media", "media": "song.mp3"}}, {}, "scenes[1].source.media", "an image"),
        (
            {**TITLE, "background": {"type": "image", "media": "clip.mp4"}},
            {},
            "scenes[1].background.media",
            "an image",
        ),
        (
            {**TITLE, "background": {"type": "video", "media": "portrait.png"}},
            {},
            "scenes[1].background.media",
            "a video",
        ),
        ({**TITLE, "music": {"media": "portrait.png"}}, {}, "scenes[1].music.media", "audio"),
        (TITLE, {"music": {"media": "clip.mp4"}}, "options.music.media", "audio"),
    ],
)
def test_a_file_of_the_wrong_kind_is_refused_naming_the_scenes_field(
    config, store, s3, media, audit, scene, options, field, wanted
):
    error = refused(film(AVATAR, scene, options=options), config, store, s3, audit)
    assert error.code == ErrorCode.INVALID_REQUEST
    assert error.message.startswith(f"{field}: ") and f"must be {wanted}" in error.message
    assert error.details["field"] == field


def test_a_missing_scene_file_is_not_found_under_the_scenes_field(config, store, s3, media, audit):
    error = refused(
        film(AVATAR, {"source": {"type": "media", "media": "gone.mp4"}}), config, store, s3, audit
    )
    assert error.code == ErrorCode.INPUT_NOT_FOUND
    assert error.message.startswith("scenes[1].source.media: ")


def test_a_too_large_scene_image_is_held_to_the_image_limit(config, store, s3, media, audit, monkeypatch):
    from talkstack.settings import get_limits

    monkeypatch.setenv("TALKSTACK_MAX_IMAGE_BYTES", "1000")
    get_limits.cache_clear()
    try:
        scene = {**TITLE, "background": {"type": "image", "media": "me.png"}}
        error = refused(film(scene), config, store, s3, audit)
    finally:
        get_limits.cache_clear()
    assert error.code == ErrorCode.IMAGE_TOO_LARGE
    assert error.message.startswith("scenes[0].background.media: ")


def test_an_avatar_scene_with_a_users_photo_needs_consent(config, store, s3, media, audit):
    user = {"source": {"type": "avatar", "inputs": {"image": "me.png", "text": "Hello."}}}
    error = refused(film(TITLE, user), config, store, s3, audit)
    assert error.code == ErrorCode.CONSENT_REQUIRED and error.details["missing"] == ["likeness"]

    # the bundled portrait needs none, and with an attestation the user's photo is accepted
    open_job(envelope(film(AVATAR)), "job-2", EXECUTION + "job-2", config, store, s3, audit)
    _, created = open_job(
        envelope(with_consent(film(TITLE, user))), "job-3", EXECUTION + "job-3", config, store, s3, audit
    )
    assert created and store.get("job-3").request.consent.scope == "likeness"


def test_a_text_driven_scene_longer_than_the_limit_is_refused(config, store, s3, media, audit, monkeypatch):
    from talkstack.settings import get_limits

    monkeypatch.setenv("TALKSTACK_MAX_TEXT_CHARS", "20")
    get_limits.cache_clear()
    try:
        long = {"source": {"type": "avatar", "inputs": {"image": "portrait.png", "text": "word " * 10}}}
        error = refused(film(TITLE, long), config, store, s3, audit)
    finally:
        get_limits.cache_clear()
    assert error.code == ErrorCode.TEXT_TOO_LONG and error.message.startswith("scenes[1].source.inputs.text")


# --- moderation ----------------------------------------------------------------------------------

BANNED = "If you read this, kill yourself."  # the shipped policy's harassment category


def every_text() -> dict[str, Any]:
    return film(
        {
            **AVATAR,
            "overlays": [
                {"type": "lower_third", "text": "Grace", "secondary": "Host"},
                {"type": "bullets", "items": ["one", "two"]},
            ],
        },
        {"source": {"type": "title", "title": "Chapter", "subtitle": "the start"}},
        {"source": {"type": "media", "media": "s3://in-bucket/x/clip.mp4"}, "transcript": "what is said"},
        {"source": {"type": "video", "inputs": {"prompt": "a sunrise over hills"}}},
    )


def test_every_text_the_video_shows_or_speaks_is_judged_by_its_scene_field():
    from talkstack.contract.parse import parse_job_request

    texts = {t.field: t.text for t in request_texts(parse_job_request(every_text()))}
    assert texts == {
        "scenes[0].source.inputs.text": "Hello there.",
        "scenes[0].overlays[0].text": "Grace",
        "scenes[0].overlays[0].secondary": "Host",
        "scenes[0].overlays[1].items[0]": "one",
        "scenes[0].overlays[1].items[1]": "two",
        "scenes[1].source.title": "Chapter",
        "scenes[1].source.subtitle": "the start",
        "scenes[2].transcript": "what is said",
        "scenes[3].source.inputs.prompt": "a sunrise over hills",
    }


@pytest.mark.parametrize("where", ["overlay", "title", "transcript"])
def test_a_banned_text_anywhere_in_a_scene_refuses_the_job(config, store, audit, monkeypatch, where):
    from talkstack.contract.parse import parse_job_request

    monkeypatch.delenv("TALKSTACK_MODERATION_POLICY", raising=False)
    get_moderation_settings.cache_clear()
    request = every_text()
    if where == "overlay":
        request["scenes"][0]["overlays"][0]["text"] = BANNED
        field = "scenes[0].overlays[0].text"
    elif where == "title":
        request["scenes"][1]["source"]["title"] = BANNED
        field = "scenes[1].source.title"
    else:
        request["scenes"][2]["transcript"] = BANNED
        field = "scenes[2].transcript"
    record = JobRecord.new("film-1", parse_job_request(request))
    record.source = JobSource(kind="api", api_key_id="k1")
    assert store.create(record)
    try:
        with pytest.raises(TalkstackError) as caught:
            moderate_job("film-1", config, store, audit, None)
    finally:
        get_moderation_settings.cache_clear()
    assert caught.value.code == ErrorCode.CONTENT_REFUSED
    assert store.get("film-1").moderation.field == field


def test_the_output_scan_says_where_a_compositions_speech_came_from():
    from talkstack.contract.parse import parse_job_request
    from talkstack.safety.scan import speech_of

    def speech(source: dict[str, Any]) -> str:
        return speech_of(parse_job_request(film({"source": source}, TITLE)))

    script = {"type": "avatar", "inputs": {"image": "s3://in-bucket/p.png", "text": "Hi."}}
    assert speech(script) == "input_text"  # input moderation read it
    assert speech({"type": "media", "media": "s3://in-bucket/x/clip.mp4"}) == "not_scanned"
    assert speech({"type": "media", "media": "s3://in-bucket/x/still.png"}) == "none"


@pytest.fixture
def token_store(monkeypatch: pytest.MonkeyPatch, store: Any) -> Iterator[None]:
    """Validate reads the Modal token through a process-wide cached client: give it a region (moto's
    Secrets Manager, inside the jobs table's mock_aws, holds no token) and forget it afterwards."""
    from talkstack.pipeline.aws import reset_clients
    from tests.support.steps import REGION

    monkeypatch.setenv("AWS_DEFAULT_REGION", REGION)
    reset_clients()
    yield
    reset_clients()


def test_a_cutout_is_refused_where_the_matte_model_has_no_worker(token_store, store, s3, media, audit):
    from tests.support.steps import make_config

    # Both matte models have a Modal class; a stack without a Modal token reaches neither there.
    on_modal = make_config(model_backends="lite-matte=modal")
    cutout = {**AVATAR, "layout": {"type": "background"}}  # an avatar over a background: cut out
    error = refused(film(cutout), on_modal, store, s3, audit)
    assert error.code == ErrorCode.MODEL_UNAVAILABLE
    assert error.message.startswith("options.matte_model: lite-matte runs on the modal worker backend, but")
    # a GPU matte model on the local workers, which do not run it
    local = make_config(model_backends="vitmatte=local")
    gpu = refused(film(cutout, options={"matte_model": "vitmatte"}), local, store, s3, audit)
    assert gpu.code == ErrorCode.MODEL_UNAVAILABLE
    assert gpu.message.startswith("options.matte_model: vitmatte is a GPU model")
    # a preview cuts out with lite-matte whatever it names
    preview = film(cutout, options={"matte_model": "vitmatte"}, preview=True)
    _, created = open_job(envelope(preview), "job-0", EXECUTION + "job-0", local, store, s3, audit)
    assert created
    # without a cutout nothing needs the matte model
    _, created = open_job(envelope(film(AVATAR)), "job-1", EXECUTION + "job-1", on_modal, store, s3, audit)
    assert created
