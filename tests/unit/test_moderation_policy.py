"""The moderation policy: the shipped file, the matcher's normalisation and word boundaries, the
language allow-list, per-key overrides and the categories no override may allow."""

from __future__ import annotations

import json

import pytest

from talkstack.contract.parse import parse_job_request
from talkstack.errors import ErrorCode, TalkstackError
from talkstack.safety.policy import (
    DEFAULT_POLICY_PATH,
    FieldText,
    judge,
    load_policy,
    request_language,
    request_texts,
)

POLICY = {
    "version": "t1",
    "allowed_languages": ["en", "de"],
    "categories": [
        {"id": "sexual_minors", "overridable": False, "terms": ["forbidden phrase"]},
        {"id": "harassment", "terms": ["kill yourself", "kys"]},
        {
            "id": "fraud",
            "patterns": [r"\bwire\b.{0,20}\bbitcoin\b"],
            "classifier_risks": ["unethical_behavior"],
        },
    ],
    "keys": {
        "k1": {"allow_categories": ["harassment"]},
        "drop:lab": {"extra_terms": {"fraud": ["gift card"]}},
    },
}


def verdict(text: str, **kw):
    return judge(load_policy(json.dumps(POLICY)), [FieldText("inputs.text", text)], **kw)


@pytest.mark.parametrize(
    "text",
    [
        "please KILL YOURSELF",
        "kill-yourself",
        "ki\u200bll your\u200dself",  # zero-width space and joiner inside words
        "k\u0456ll yourself",  # Cyrillic і for i
        "ｋｉｌｌ　ｙｏｕｒｓｅｌｆ",  # full-width letters and space
        "k1ll y0urs3lf",  # leetspeak
        "kíll yoursélf",  # accents
        "killyourself",  # the phrase's words written together (a voice reads it the same)
        "ki\ufe0fll yourse\u3164lf",  # a variation selector and a Hangul filler: invisible, not Cf
        "k\u034fill your\U000e0100self",  # combining grapheme joiner, a supplementary selector
    ],
)
def test_a_term_survives_unicode_and_spelling_tricks(text):
    got = verdict(text)
    assert (got.decision, got.category, got.source, got.field) == (
        "refused",
        "harassment",
        "policy",
        "inputs.text",
    )


@pytest.mark.parametrize(
    "text",
    ["skillful yourselves", "kysely", "the killer yourself-help book", "skillyourself", "killyourselves"],
)
def test_terms_match_whole_words_only(text):
    assert verdict(text).decision == "allowed"


def test_patterns_are_the_operators_regexes_over_the_normalised_text():
    assert verdict("Please WIRE it all in Bitcoin").category == "fraud"
    assert verdict("wire the fence, then talk about bitcoin for an hour or more").decision == "allowed"


def test_the_declared_language_must_be_allowed():
    refused = verdict("Bonjour", language="fr")
    assert (refused.decision, refused.category, refused.field) == (
        "refused",
        "language_not_allowed",
        "language",
    )
    assert verdict("Hallo", language="de-AT").decision == "allowed"  # the primary subtag counts
    assert verdict("no language declared", language=None).decision == "allowed"


def test_a_keys_override_allows_its_category_for_that_key_only():
    allowed = verdict("kys", key="k1")
    assert allowed.decision == "allowed" and allowed.allowed_by_key == ["harassment"]
    assert verdict("kys", key="k2").decision == "refused"
    assert verdict("forbidden phrase", key="k1").category == "sexual_minors"


def test_a_keys_extra_terms_refuse_for_that_key_only():
    assert verdict("buy a gift card", key="drop:lab").category == "fraud"
    assert verdict("buy a gift card", key="k1").decision == "allowed"


def test_a_non_overridable_category_cannot_be_allowed_even_in_the_file():
    bad = {**POLICY, "keys": {"k1": {"allow_categories": ["sexual_minors"]}}}
    with pytest.raises(TalkstackError) as refused:
        load_policy(json.dumps(bad))
    assert refused.value.code == ErrorCode.MODERATION_POLICY_INVALID
    assert "sexual_minors can never be overridden" in refused.value.message


def test_classifier_scores_refuse_as_the_category_their_risk_maps_to_unless_overridden():
    policy = load_policy(json.dumps(POLICY))
    texts = [FieldText("inputs.prompt", "a harmless sentence")]
    high = {"unethical_behavior": 0.8, "violence": 0.99}  # violence maps to no category here
    got = judge(policy, texts, classifier="m", scores=high)
    assert (got.decision, got.category, got.source, got.classifier) == ("refused", "fraud", "classifier", "m")
    assert judge(policy, texts, classifier="m", scores={"unethical_behavior": 0.2}).decision == "allowed"
    # the classifier scores a job's texts together: its refusal names every field it judged
    both = [*texts, FieldText("inputs.text", "another harmless sentence")]
    assert judge(policy, both, classifier="m", scores=high).field == "inputs.prompt or inputs.text"


@pytest.mark.parametrize(
    ("source", "message"),
    [
        ("{not json", "not JSON"),
        ('{"version": "x", "categories": []}', "categories"),
        ('{"version": "x", "categories": [{"id": "a", "patterns": ["(unclosed"]}]}', "not a valid regular"),
        ("/nonexistent/policy.json", "cannot be read"),
    ],
)
def test_a_bad_policy_is_refused_with_a_one_line_reason(source, message):
    with pytest.raises(TalkstackError) as bad:
        load_policy(source)
    assert bad.value.code == ErrorCode.MODERATION_POLICY_INVALID and message in bad.value.message
    assert "\n" not in bad.value.message


def test_the_shipped_policy_loads_from_the_default_and_from_its_path():
    shipped = load_policy(None)
    assert shipped.version == load_policy(str(DEFAULT_POLICY_PATH)).version
    assert shipped.category("sexual_minors").overridable is False
    assert (
        judge(shipped, [FieldText("inputs.text", "Welcome to our quarterly results.")]).decision == "allowed"
    )


def test_which_fields_are_checked_and_which_language_counts():
    avatar = parse_job_request(
        {
            "task": "avatar",
            "inputs": {"image": "p.png", "text": "Hello"},
            "options": {"prompt": "a calm office", "voice": {"language": "de"}},
        }
    )
    assert [t.field for t in request_texts(avatar)] == ["inputs.text", "options.prompt"]
    assert request_language(avatar) == "de"
    video = parse_job_request(
        {"task": "video", "inputs": {"prompt": "a beach"}, "options": {"negative_prompt": "kill yourself"}}
    )
    assert [t.field for t in request_texts(video)] == ["inputs.prompt"]  # negative prompt: not checked
    assert request_language(video) is None


def test_a_bundled_policy_path_loads_whatever_the_working_directory(tmp_path, monkeypatch):
    """`talkstack/assets/policy/<name>.json` is how a deployed stack names an operator's file (the
    bundle carries that folder); it must not depend on the process's working directory."""
    monkeypatch.chdir(tmp_path)
    assert load_policy("talkstack/assets/policy/default.json").version == load_policy(None).version
