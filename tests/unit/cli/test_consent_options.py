"""The CLI's consent attestation: `--consent-subject`/`--consent-by` build one that the contract
accepts, and a job file's consent clip is uploaded with its inputs."""

from __future__ import annotations

import pytest

from talkstack.cli.common import add_consent
from talkstack.cli.drop import relative_media
from talkstack.contract.parse import parse_job_request
from talkstack.errors import TalkstackError


@pytest.mark.parametrize(
    ("document", "scope"),
    [
        ({"task": "avatar", "inputs": {"image": "s3://bkt/me.png", "audio": "s3://bkt/a.wav"}}, "likeness"),
        ({"task": "voice", "inputs": {"text": "Hi.", "reference_voice": "s3://bkt/v.wav"}}, "voice"),
        (
            {
                "task": "avatar",
                "inputs": {"image": "s3://bkt/me.png", "text": "Hi.", "reference_voice": "s3://bkt/v.wav"},
            },
            "both",
        ),
    ],
)
def test_the_options_build_an_attestation_of_the_scope_the_job_needs(document, scope):
    add_consent(document, "Grace Subject", None)

    request = parse_job_request(document)  # the contract accepts it as built
    assert request.consent.scope == scope
    assert request.consent.subject == request.consent.attested_by == "Grace Subject"
    assert request.consent.statement_id == "talkstack-cli"


def test_the_options_never_replace_an_attestation_of_the_job_file():
    document = {
        "task": "avatar",
        "inputs": {"image": "me.png", "audio": "a.wav"},
        "consent": {"subject": "X"},
    }
    with pytest.raises(TalkstackError, match="already has a consent attestation"):
        add_consent(document, "Grace Subject", "Ada")
    with pytest.raises(TalkstackError, match="--consent-by needs --consent-subject"):
        add_consent({"task": "avatar"}, None, "Ada")


def test_a_relative_consent_clip_is_uploaded_beside_the_inputs():
    manifest = {
        "task": "voice",
        "inputs": {"text": "Hi.", "reference_voice": "voice.wav"},
        "consent": {"clip": "clips/consent.m4a"},
    }
    assert relative_media(manifest) == {
        "inputs.reference_voice": "voice.wav",
        "consent.clip": "clips/consent.m4a",
    }
