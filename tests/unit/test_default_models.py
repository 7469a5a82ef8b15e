"""A deployment's default models: requests that name no model get them; a named model always wins."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from talkstack.contract.parse import parse_job_request, with_default_models
from talkstack.pipeline.config import PipelineConfig
from tests.support.pipeline_env import local_config_fields

GPU_DEFAULTS = {"avatar": "multitalk", "voice": "chatterbox", "video": "wan2.2-ti2v-5b"}
AUDIO_AVATAR = {"task": "avatar", "inputs": {"image": "p.png", "audio": "s.wav"}}
TEXT_AVATAR = {"task": "avatar", "inputs": {"image": "p.png", "text": "Hello there."}}


pytestmark = pytest.mark.usefixtures("no_pipeline_environment")


def config(**extra: str) -> PipelineConfig:
    return PipelineConfig.model_validate({**local_config_fields(), **extra})


def test_a_request_without_a_model_gets_the_deployments_default():
    avatar = with_default_models(parse_job_request(AUDIO_AVATAR), GPU_DEFAULTS)
    assert avatar.options.model == "multitalk" and avatar.options.voice is None  # no voice step: no voice
    voice = with_default_models(parse_job_request({"task": "voice", "inputs": {"text": "Hi."}}), GPU_DEFAULTS)
    assert voice.options.model == "chatterbox"
    video = with_default_models(
        parse_job_request({"task": "video", "inputs": {"prompt": "a cat"}}), GPU_DEFAULTS
    )
    assert video.options.model == "wan2.2-ti2v-5b"


def test_a_text_driven_avatar_gets_both_defaults_and_keeps_its_other_settings():
    raw = {**TEXT_AVATAR, "options": {"speed": 1.2, "voice": {"language": "fr"}}}
    request = with_default_models(parse_job_request(raw), GPU_DEFAULTS)
    assert request.options.model == "multitalk" and request.options.speed == 1.2
    assert (
        request.voice_step_options().model == "chatterbox" and request.voice_step_options().language == "fr"
    )


def test_explicit_nulls_name_no_model():
    # What schemathesis sent: `"voice": null` on a text avatar (valid, and it names no voice model).
    raw = {**TEXT_AVATAR, "options": {"voice": None, "prompt": None}}
    request = with_default_models(parse_job_request(raw), GPU_DEFAULTS)
    assert request.options.model == "multitalk" and request.voice_step_options().model == "chatterbox"


def test_a_named_model_always_wins():
    raw = {**TEXT_AVATAR, "options": {"model": "lite-avatar", "voice": {"model": "lite-voice"}}}
    request = parse_job_request(raw)
    assert with_default_models(request, GPU_DEFAULTS) is request
    named_lite = parse_job_request({**AUDIO_AVATAR, "options": {"model": "lite-avatar"}})
    assert with_default_models(named_lite, GPU_DEFAULTS).options.model == "lite-avatar"


def test_without_defaults_the_contracts_own_apply():
    request = parse_job_request(TEXT_AVATAR)
    assert with_default_models(request, {}) is request
    assert request.options.model == "lite-avatar" and request.voice_step_options().model == "lite-voice"
    only_voice = with_default_models(request, {"voice": "indextts2"})
    assert only_voice.options.model == "lite-avatar" and only_voice.voice_step_options().model == "indextts2"


def test_a_multitalk_v0_manifest_gets_the_default_avatar_model():
    manifest = {
        "input": {"reference_image_s3_url": "s3://seed-in/p.png", "audio_s3_url": "s3://seed-in/s.wav"},
        "output": {"s3_bucket": "seed-out"},
        "options": {"turbo_mode": True, "resolution": "720p"},
    }
    request = with_default_models(parse_job_request(manifest), GPU_DEFAULTS)
    assert request.options.model == "multitalk" and request.options.turbo
    assert request.options.resolution == "720p" and request.output.bucket == "seed-out"


def test_configured_defaults_are_parsed_and_reported_per_task():
    cfg = config(default_models="avatar=multitalk, voice=chatterbox")
    assert cfg.default_models == {"avatar": "multitalk", "voice": "chatterbox"}
    assert cfg.default_model("avatar") == "multitalk" and cfg.default_model("video") == "ltx-video"
    assert config().default_model("avatar") == "lite-avatar"


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("avatar=chatterbox", "chatterbox is a voice model, not avatar"),
        ("avatar=nonesuch", "unknown model 'nonesuch'"),
        ("speech=chatterbox", "default_models"),
        ("multitalk", "model=value pairs"),
    ],
)
def test_bad_defaults_fail_the_configuration_with_the_reason(value, message):
    with pytest.raises(ValidationError, match=message):
        config(default_models=value)


def test_a_composition_has_no_default_model_of_its_own():
    # A composition runs engines per scene (their defaults apply there); "composition" is no engine task.
    with pytest.raises(ValidationError, match="default_models"):
        config(default_models="composition=lite-avatar")


def test_a_compositions_scenes_get_the_deployments_defaults():
    from talkstack.pipeline.compositions import with_scene_default_models

    request = parse_job_request(
        {
            "task": "composition",
            "scenes": [
                {"source": {"type": "avatar", "inputs": {"image": "s3://media-bucket/p.png", "text": "Hi."}}},
                {
                    "source": {
                        "type": "avatar",
                        "inputs": {"image": "s3://media-bucket/p.png", "audio": "s3://media-bucket/a.wav"},
                        "options": {"model": "lite-avatar"},
                    }
                },
                {"source": {"type": "title", "title": "End"}},
            ],
        }
    )
    cfg = config(default_models="avatar=multitalk,voice=chatterbox")
    scenes = with_scene_default_models(request, cfg.default_models).scenes
    assert scenes[0].source.options.model == "multitalk"
    assert scenes[0].source.options.voice.model == "chatterbox"
    assert scenes[1].source.options.model == "lite-avatar"  # its own choice wins
