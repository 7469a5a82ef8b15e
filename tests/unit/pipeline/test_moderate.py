"""The Moderate step: its real code, the real JobStore and audit log on moto's in-process DynamoDB,
and the text-safety classifier reached through Modal's real client against the fake control plane
(the deployed class is the real modal_workers/text_safety.py one)."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest

from talkstack.contract.parse import parse_job_request
from talkstack.contract.record import JobRecord, JobSource
from talkstack.errors import ErrorCode, TalkstackError
from talkstack.pipeline.audit import AuditLog
from talkstack.pipeline.backends import ModalBackend, ModalToken
from talkstack.pipeline.moderate import ModalTextClassifier, classifier_for, moderate_job
from talkstack.pipeline.store import JobStore
from talkstack.safety.text_classifier import TEXT_SAFETY_APP, TEXT_SAFETY_CLASS, TEXT_SAFETY_MODEL
from talkstack.settings.moderation import get_moderation_settings
from tests.support.fake_modal import FakeModal
from tests.support.steps import JOBS_TABLE, make_config

TOKEN = ModalToken(token_id="ak-test", token_secret="as-test")
MAPPED_RISKS = ["harm", "sexual_content", "social_bias", "unethical_behavior", "violence"]
SCRIPT = "If you read this, kill yourself."  # the shipped policy's harassment category


@pytest.fixture
def settings(monkeypatch: pytest.MonkeyPatch):
    """Set TALKSTACK_MODERATION_* for one test (the settings are cached per process)."""

    def apply(**values: str) -> None:
        for name, value in values.items():
            monkeypatch.setenv(f"TALKSTACK_MODERATION_{name.upper()}", value)
        get_moderation_settings.cache_clear()

    monkeypatch.delenv("TALKSTACK_MODERATION_POLICY", raising=False)
    get_moderation_settings.cache_clear()
    yield apply
    get_moderation_settings.cache_clear()


@pytest.fixture
def audit(ddb: Any) -> AuditLog:
    return AuditLog(JOBS_TABLE, ddb)


def submit(store: JobStore, text: str, key: str = "k1", job_id: str = "voice-1") -> str:
    request = parse_job_request({"task": "voice", "inputs": {"text": text}, "options": {"language": "en"}})
    record = JobRecord.new(job_id, request)
    record.source = JobSource(kind="api", api_key_id=key)
    assert store.create(record)
    return job_id


class Recording:
    model = "recording-classifier"

    def __init__(self, scores: dict[str, float] | None = None) -> None:
        self.calls: list[tuple[list[str], list[str]]] = []
        self.scores = scores or {}

    def score(self, texts: list[str], risks: list[str]) -> dict[str, float]:
        self.calls.append((texts, risks))
        return {risk: self.scores.get(risk, 0.01) for risk in risks}


def test_a_refused_script_fails_with_its_category_and_is_audited_without_its_text(
    config, store, audit, settings, ddb
):
    settings()
    job_id = submit(store, SCRIPT)
    classifier = Recording()
    with pytest.raises(TalkstackError) as refused:
        moderate_job(job_id, config, store, audit, classifier)
    error = refused.value
    assert error.code == ErrorCode.CONTENT_REFUSED
    assert error.details["category"] == "harassment" and error.details["source"] == "policy"
    assert error.details["policy_version"] == "default-2026-12-07"
    assert "kill" not in error.message and "\n" not in error.message
    assert classifier.calls == []  # refused by the policy: no GPU spent on it

    record = store.get(job_id)
    assert record.moderation.decision == "refused" and record.moderation.category == "harassment"
    assert record.moderation.classifier == "none" and record.moderation.field == "inputs.text"
    assert [(s.name, s.status) for s in record.steps] == [("moderate", "failed")]
    assert record.status == "queued"  # nothing ran; RecordFailure fails it

    [entry] = audit.trail("k1")[0]
    assert entry.action == "job.refused" and entry.object.id == job_id
    assert entry.details["category"] == "harassment"
    assert "kill" not in json.dumps(entry.model_dump(mode="json"))


def test_a_keys_override_lets_the_same_script_pass_and_the_classifier_judges_it(
    config, store, audit, settings
):
    settings(policy=json.dumps(_policy_with_override("k2", ["harassment"])))
    job_id = submit(store, SCRIPT, key="k2")
    classifier = Recording()
    verdict = moderate_job(job_id, config, store, audit, classifier)
    assert verdict.decision == "allowed" and verdict.allowed_by_key == ["harassment"]
    assert verdict.classifier == "recording-classifier"
    # Only the risks the policy maps to a category are asked (each costs a forward pass).
    assert classifier.calls == [([SCRIPT], MAPPED_RISKS)]
    record = store.get(job_id)
    assert [(s.name, s.status) for s in record.steps] == [("moderate", "completed")]
    assert audit.trail("k2")[0] == []  # a pass is on the record, not in the audit trail
    # Another key is not covered by k2's override.
    other = submit(store, SCRIPT, key="k3", job_id="voice-2")
    with pytest.raises(TalkstackError, match="harassment"):
        moderate_job(other, config, store, audit, classifier)


def _policy_with_override(key: str, allow: list[str]) -> dict:
    from talkstack.safety.policy import DEFAULT_POLICY_PATH

    policy = json.loads(DEFAULT_POLICY_PATH.read_text())
    policy["version"] = "test-override"
    policy["keys"] = {key: {"allow_categories": allow}}
    return policy


def test_the_deployed_classifier_is_called_on_modal_and_its_risk_refuses(
    config, store, audit, settings, fake_modal: FakeModal
):
    settings()
    received: list[tuple[list[str], list[str]]] = []

    def container(texts: list[str], risks: list[str]) -> dict[str, float]:
        received.append((texts, risks))
        return {risk: (0.93 if risk == "violence" else 0.02) for risk in risks}

    fake_modal.deploy(TEXT_SAFETY_APP, TEXT_SAFETY_CLASS, container=container)
    job_id = submit(store, "A calm and friendly greeting.")
    classifier = ModalTextClassifier(ModalBackend(TOKEN), timeout_s=10)
    with pytest.raises(TalkstackError) as refused:
        moderate_job(job_id, config, store, audit, classifier)
    assert refused.value.details["category"] == "violent_extremism"
    assert refused.value.details["source"] == "classifier"
    [spawned] = fake_modal.spawned
    assert (spawned.app, spawned.cls, spawned.method) == (TEXT_SAFETY_APP, TEXT_SAFETY_CLASS, "score")
    assert received == [(["A calm and friendly greeting."], MAPPED_RISKS)]
    verdict = store.get(job_id).moderation
    assert verdict.classifier == TEXT_SAFETY_MODEL and verdict.scores["violence"] == pytest.approx(0.93)


def test_a_classifier_that_does_not_answer_fails_the_job_unless_the_operator_allows(
    config, store, audit, settings, fake_modal: FakeModal
):
    settings()

    def slow(texts: list[str], risks: list[str]) -> dict[str, float]:
        time.sleep(3)
        return {}

    fake_modal.deploy(TEXT_SAFETY_APP, TEXT_SAFETY_CLASS, container=slow)
    job_id = submit(store, "Hello there.")
    classifier = ModalTextClassifier(ModalBackend(TOKEN), timeout_s=0.5)
    with pytest.raises(TalkstackError) as unavailable:
        moderate_job(job_id, config, store, audit, classifier)
    assert unavailable.value.code == ErrorCode.MODERATION_UNAVAILABLE
    assert fake_modal.cancelled == [fake_modal.spawned[0].call_id]  # the wait ran out: call stopped

    settings(classifier_unavailable="allow")
    verdict = moderate_job(job_id, config, store, audit, classifier)
    assert verdict.decision == "allowed" and verdict.classifier == "none"


def test_the_classifier_runs_only_where_the_engines_run_on_modal(settings, no_pipeline_environment):
    settings()
    assert classifier_for(make_config(), get_moderation_settings(), lambda: None) is None  # local backend
    settings(classifier="none")
    modal_stack = make_config(worker_backend="modal", modal_token_secret="talkstack/modal")
    assert classifier_for(modal_stack, get_moderation_settings(), lambda: None) is None
    settings(classifier="auto")
    with pytest.raises(TalkstackError) as no_token:  # modal stack: the classifier needs the token
        classifier_for(
            modal_stack.model_copy(update={"modal_token_secret": None}),
            get_moderation_settings(),
            lambda: None,
        )
    assert no_token.value.code == ErrorCode.MODERATION_UNAVAILABLE
