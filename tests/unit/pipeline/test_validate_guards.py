"""Validate's guards at their edges: the SSRF guard on every address family a webhook URL can name,
the size and text limits at exactly their value, the voice step's own model, and messages that name
an input the way the caller wrote it. IP literals and `localhost` only: getaddrinfo answers them
from the literal and /etc/hosts, so no DNS is asked."""

from __future__ import annotations

from typing import Any

import pytest

from talkstack.contract.parse import parse_job_request
from talkstack.contract.record import JobSource
from talkstack.errors import TalkstackError
from talkstack.pipeline.store import JobStore
from talkstack.pipeline.tenancy import Namespace
from talkstack.pipeline.validate import check_media, open_job, resolve_media, validate_request
from talkstack.settings import MediaLimits
from talkstack.settings.engines import get_settings
from tests.support.consent import with_consent
from tests.support.fakes import FakeS3
from tests.support.steps import INPUT, make_config, put_sample_media

MANIFEST_KEY = "inputs/talk/job.json"
SOURCE = JobSource(kind="s3", bucket=INPUT, key=MANIFEST_KEY, etag="e")


def envelope(**changes: Any) -> dict[str, Any]:
    request: dict[str, Any] = {"task": "avatar", "inputs": {"image": "portrait.png", "audio": "speech.wav"}}
    request.update(changes)
    return {"request": request, "source": SOURCE.model_dump(mode="json", exclude_none=True)}


@pytest.fixture
def media(s3: FakeS3) -> dict[str, str]:
    return put_sample_media(s3, "inputs/talk")


def refusal(raw: Any, config: Any, store: Any, s3: FakeS3) -> TalkstackError:
    with pytest.raises(TalkstackError) as caught:
        open_job(raw, "refused", None, config, store, s3)
    assert store.get("refused") is None  # nothing is created for a refused request
    return caught.value


# --- the SSRF guard on notify.webhook_url -------------------------------------------------------------

INTERNAL = {
    "https://127.0.0.1/hook": "loopback",
    "https://localhost:8443/hook": "loopback",
    "https://10.1.2.3/hook": "private",
    "https://172.16.0.9/hook": "private",
    "https://192.168.1.1/hook": "private",
    "https://169.254.169.254/latest/meta-data/": "metadata",
    "https://169.254.10.10/hook": "link-local",
    "https://100.64.0.1/hook": "shared address space",
    "https://0.0.0.0/hook": "unspecified",
    "https://[::1]/hook": "loopback",
    "https://[fe80::1]/hook": "link-local",
    "https://[fd00::1]/hook": "private",
    "https://[::ffff:127.0.0.1]/hook": "loopback",
    "https://[::ffff:10.0.0.1]/hook": "private",
    "https://[::ffff:169.254.169.254]/hook": "metadata",
}


@pytest.mark.parametrize("url", list(INTERNAL))
def test_a_webhook_that_reaches_an_internal_address_is_refused(config, store, s3, media, url):
    error = refusal(envelope(notify={"webhook_url": url}), config, store, s3)

    assert error.code == "INVALID_REQUEST" and error.message.startswith("notify.webhook_url: ")
    assert INTERNAL[url] in error.message


def test_local_mode_allows_loopback_only(no_pipeline_environment, store, s3, media):
    # Given a stack that allows loopback webhooks (the local stack)
    config = make_config(allow_loopback_webhooks=True)

    # Then loopback (IPv4, IPv6 and the IPv4-mapped form) passes, over plain http too
    for n, url in enumerate(
        ["http://127.0.0.1:9/hook", "http://[::1]:9/hook", "https://[::ffff:127.0.0.1]/h"]
    ):
        record, _ = open_job(envelope(notify={"webhook_url": url}), f"job-{n}", None, config, store, s3)
        assert str(record.request.notify.webhook_url) == url
    # and private ranges, the metadata address and plain http elsewhere are still refused
    for url in ("https://10.0.0.1/hook", "https://169.254.169.254/", "http://93.184.216.34/hook"):
        error = refusal(envelope(notify={"webhook_url": url}), config, store, s3)
        assert error.code == "INVALID_REQUEST" and "notify.webhook_url" in error.message


def test_a_public_https_webhook_is_accepted_and_plain_http_is_not(config, store, s3, media):
    record, created = open_job(
        envelope(notify={"webhook_url": "https://93.184.216.34/hook"}), "job-1", None, config, store, s3
    )
    assert created and str(record.request.notify.webhook_url) == "https://93.184.216.34/hook"

    error = refusal(envelope(notify={"webhook_url": "http://93.184.216.34/hook"}), config, store, s3)
    assert error.code == "INVALID_REQUEST" and "https" in error.message


# --- limits at exactly their value --------------------------------------------------------------------


@pytest.mark.parametrize("name", ["image", "audio"])
def test_an_input_of_exactly_the_limit_is_accepted(config, s3, media, name):
    limits = MediaLimits(max_image_bytes=1000, max_audio_bytes=1000)
    for each in ("image", "audio"):
        s3.put_object(Bucket=INPUT, Key=media[each], Body=b"\0" * (1000 if each == name else 10))

    raw = with_consent(envelope()["request"])  # a photo of zeros is no bundled sample: it needs consent
    request = validate_request(raw, SOURCE, "job-1", config, s3, limits)

    assert str(request.inputs.image) == f"s3://{INPUT}/{media['image']}"


def test_text_of_exactly_the_limit_is_accepted_and_one_more_character_is_not(config, s3, media):
    limits = MediaLimits(max_text_chars=20)
    at_limit = {"image": "portrait.png", "text": "x" * 20}

    request = validate_request(envelope(inputs=at_limit)["request"], SOURCE, "job-1", config, s3, limits)
    assert request.inputs.text == "x" * 20

    over = {"image": "portrait.png", "text": "x" * 21}
    with pytest.raises(TalkstackError) as caught:
        validate_request(envelope(inputs=over)["request"], SOURCE, "job-1", config, s3, limits)
    assert caught.value.code == "TEXT_TOO_LONG" and "21 characters" in caught.value.message


# --- models -------------------------------------------------------------------------------------------


def test_the_voice_step_model_of_a_text_avatar_is_checked_too(config, store, s3, media):
    # A text-driven avatar runs a voice step: its model must run here as well as the avatar's
    raw = envelope(
        inputs={"image": "portrait.png", "text": "hello"}, options={"voice": {"model": "chatterbox"}}
    )

    error = refusal(raw, config, store, s3)

    assert error.code == "MODEL_UNAVAILABLE" and error.message.startswith("options.voice.model: chatterbox")


def test_a_model_without_a_modal_worker_cannot_be_sent_to_modal(no_pipeline_environment, store, s3, media):
    config = make_config(model_backends="lite-avatar=modal")

    error = refusal(envelope(), config, store, s3)

    assert error.code == "MODEL_UNAVAILABLE" and "lite-avatar has no Modal worker" in error.message


def test_a_cpu_model_that_cannot_run_here_is_unavailable(config, store, s3, media, monkeypatch):
    # Given a stack whose espeak-ng is missing: the lite voice cannot speak
    monkeypatch.setenv("TALKSTACK_ESPEAK", "/nonexistent/espeak-ng")
    get_settings.cache_clear()
    try:
        error = refusal(envelope(inputs={"image": "portrait.png", "text": "hello"}), config, store, s3)
    finally:
        get_settings.cache_clear()

    assert error.code == "MODEL_UNAVAILABLE" and error.message.startswith("options.voice.model: lite-voice")
    assert "espeak-ng" in error.message


# --- what a message names -----------------------------------------------------------------------------


def test_a_missing_input_is_named_as_the_caller_wrote_it(config, s3, media):
    # Given an API key's request whose audio the API resolved from an upload id
    request = parse_job_request(
        {
            "task": "avatar",
            "inputs": {
                "image": f"s3://{INPUT}/uploads/keya/upl_1/portrait.png",
                "audio": f"s3://{INPUT}/uploads/keya/upl_2/speech.wav",
            },
        }
    )
    request = resolve_media(request, INPUT, "")
    namespace = Namespace.for_key("keya", config)
    s3.put_object(Bucket=INPUT, Key="uploads/keya/upl_1/portrait.png", Body=b"png")

    with pytest.raises(TalkstackError) as caught:
        check_media(request, namespace, s3, MediaLimits(), sent={"inputs.audio": "upl_2"})

    # Then the answer names the upload id, never the bucket the caller did not name
    assert caught.value.code == "INPUT_NOT_FOUND"
    assert caught.value.message == "inputs.audio: upl_2 does not exist or this API key may not read it"


# --- a retried Lambda racing the first ----------------------------------------------------------------


class FirstRunLandsFirst:
    """The DynamoDB client, but just before this run's create lands, the first run of the same
    validate (another Lambda, same execution) creates the record: a real conditional write."""

    def __init__(self, ddb: Any, first: Any) -> None:
        self.ddb, self.first, self.raced = ddb, first, False

    def put_item(self, **params: Any) -> Any:
        if not self.raced and params.get("ConditionExpression") == "attribute_not_exists(pk)":
            self.raced = True
            self.first()
        return self.ddb.put_item(**params)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.ddb, name)


def test_a_run_that_loses_the_create_returns_the_record_that_won(config, store, ddb, s3, media):
    def first() -> None:
        open_job(envelope(), "job-1", "arn:first", config, store, s3)

    racing = JobStore(store.table, FirstRunLandsFirst(ddb, first))

    record, created = open_job(envelope(), "job-1", "arn:second", config, racing, s3)

    # The stored record is the first run's; this run reports it, not the one it failed to write
    assert not created and record == store.get("job-1")
    assert record.source.execution_arn == "arn:first"
