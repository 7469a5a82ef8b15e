"""The moderation policy a deploy names is loaded at synth: a policy every job would fail on, or a
path the Lambda bundle does not carry, fails synth instead of every job."""

from __future__ import annotations

import json

import pytest
from pydantic import ValidationError

import tests.support.cdk_synth  # noqa: F401  (puts infra/cdk on sys.path)

KEY = "talkstack:moderationPolicy"


def load_settings(context, environ):
    from talkstack_cdk.settings import load_settings

    return load_settings(context, environ)


def test_the_shipped_and_bundled_policies_and_valid_inline_json_pass():
    inline = json.dumps({"version": "v1", "categories": [{"id": "a", "terms": ["x"]}]})
    for value in ("talkstack/assets/policy/default.json", inline):
        assert load_settings({KEY: value}, environ={}).moderation_policy == value
    assert load_settings({}, environ={}).moderation_policy is None


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ('{"version": "v1", "categories": []}', "categories"),
        ("{not json", "not JSON"),
        ("policies/acme.json", "talkstack/assets/policy/<name>.json"),
        ("/etc/acme.json", "talkstack/assets/policy/<name>.json"),
        ("talkstack/assets/policy/missing.json", "cannot be read"),
    ],
)
def test_a_policy_no_job_could_use_fails_synth(value, message):
    with pytest.raises(ValidationError, match="moderation_policy") as bad:
        load_settings({KEY: value}, environ={})
    assert message in str(bad.value)
