"""Moderate step: judge the texts a job will turn into media, before any GPU work.

Between Validate and Plan, for every way in (S3 drop, direct start, API). The operator's policy
(talkstack/safety/policy.py; TALKSTACK_MODERATION_POLICY) runs first, on the Lambda; only texts it
allows go on to the text-safety classifier on Modal (modal_workers/text_safety.py), when the
stack runs its engines there (`TALKSTACK_MODERATION_CLASSIFIER`). The verdict goes on the record
(`record.moderation`, and a `moderate` step for the timeline). A refusal writes a `job.refused`
audit entry (category and policy version, never the text) and fails the job with CONTENT_REFUSED:
the state machine's Catch routes it to RecordFailure like any Validate failure, so Plan never runs
and no worker task is ever dispatched.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime
from functools import lru_cache
from typing import Any, Protocol

from talkstack.contract.moderation import NO_CLASSIFIER, ModerationVerdict
from talkstack.contract.record import JobRecord, JobSource, StepRecord, utc_now
from talkstack.errors import ErrorCode, TalkstackError
from talkstack.pipeline.audit import DROP_ACTOR, PIPELINE_SOURCE, Actor, AuditLog
from talkstack.pipeline.backends import ModalBackend, read_modal_token
from talkstack.pipeline.config import PipelineConfig
from talkstack.pipeline.jobids import manifest_job_name
from talkstack.safety.policy import Policy, judge, load_policy, refusal, request_language, request_texts
from talkstack.safety.text_classifier import (
    TEXT_SAFETY_APP,
    TEXT_SAFETY_CLASS,
    TEXT_SAFETY_METHOD,
    TEXT_SAFETY_MODEL,
)
from talkstack.settings.moderation import ModerationSettings, get_moderation_settings

log = logging.getLogger(__name__)

OPERATOR_ACTOR = "operator"
"""`key_id` of audit entries about jobs started directly on the state machine (its starter is an
operator: no API key, no drop folder)."""


class TextClassifier(Protocol):
    model: str

    def score(self, texts: list[str], risks: list[str]) -> dict[str, float]: ...


class ModalTextClassifier:
    """The deployed `talkstack-text-safety` class, called with a bounded wait."""

    model = TEXT_SAFETY_MODEL

    def __init__(self, backend: ModalBackend, timeout_s: float) -> None:
        self.backend, self.timeout_s = backend, timeout_s

    def score(self, texts: list[str], risks: list[str]) -> dict[str, float]:
        answer = self.backend.call(
            TEXT_SAFETY_APP, TEXT_SAFETY_CLASS, TEXT_SAFETY_METHOD, texts, risks, timeout_s=self.timeout_s
        )
        return {risk: float(answer[risk]) for risk in risks}


@lru_cache(maxsize=4)
def policy_from(source: str | None) -> Policy:
    """The policy a setting names, parsed once per container (per value: local mode reconfigures)."""
    return load_policy(source)


def submitter_key(source: JobSource | None, config: PipelineConfig) -> str | None:
    """Whose override applies: the API key id, `drop:<folder>` for an S3 drop, None otherwise."""
    if source is None:
        return None
    if source.kind == "api":
        return source.api_key_id
    if source.kind == "s3" and source.key:
        try:
            return DROP_ACTOR + manifest_job_name(source.key, config.input_prefix, config.manifest_name)
        except TalkstackError:
            return None
    return None


def classifier_for(
    config: PipelineConfig, settings: ModerationSettings, secrets_client: Callable[[], Any]
) -> TextClassifier | None:
    """The classifier this stack uses, or None (the policy alone judges)."""
    wanted = settings.classifier
    if wanted == "none" or (wanted == "auto" and config.worker_backend != "modal"):
        return None
    try:
        token = read_modal_token(config.modal_token_secret, secrets_client())
    except TalkstackError as exc:
        if settings.classifier_unavailable == "allow":
            log.warning("text-safety classifier unavailable, judged by the policy alone: %s", exc.message)
            return None
        raise TalkstackError(
            ErrorCode.MODERATION_UNAVAILABLE, f"the text-safety classifier cannot be called: {exc.message}"
        ) from exc
    return ModalTextClassifier(ModalBackend(token, config.modal_environment), settings.classifier_timeout_s)


def _classify(
    classifier: TextClassifier, texts: list[str], risks: list[str], settings: ModerationSettings
) -> dict[str, float] | None:
    """The classifier's scores; None when it could not answer and the operator allows that."""
    import modal.exception

    try:
        return classifier.score(texts, risks)
    except (TimeoutError, modal.exception.Error, TalkstackError) as exc:
        if settings.classifier_unavailable == "allow":
            log.warning("text-safety classifier unavailable, judged by the policy alone: %s", exc)
            return None
        raise TalkstackError(
            ErrorCode.MODERATION_UNAVAILABLE,
            f"the text-safety classifier did not answer ({type(exc).__name__}); retry the job later, or "
            "ask the operator to deploy modal_workers/text_safety.py",
        ) from exc


def moderate(
    record: JobRecord,
    policy: Policy,
    key: str | None,
    classifier: TextClassifier | None,
    settings: ModerationSettings,
) -> ModerationVerdict:
    """The verdict on a job's texts: the policy, then (for what it allows) the classifier."""
    assert record.request is not None
    texts = request_texts(record.request)
    language = request_language(record.request)
    verdict = judge(policy, texts, language=language, key=key)
    if verdict.decision == "refused" or classifier is None or not texts:
        return verdict
    risks = sorted({risk for category in policy.categories for risk in category.classifier_risks})
    if not risks:
        return verdict
    scores = _classify(classifier, [item.text for item in texts], risks, settings)
    if scores is None:
        return verdict
    return judge(policy, texts, language=language, key=key, classifier=classifier.model, scores=scores)


def _with_step(record: JobRecord, verdict: ModerationVerdict, started: datetime) -> JobRecord:
    """The verdict and a `moderate` step on the record, leaving its status alone (the job is not
    running yet: nothing was dispatched)."""
    if record.is_terminal:  # cancelled meanwhile: its record stays as the cancel left it
        return record
    finished = utc_now()
    step = StepRecord(
        name="moderate",
        status="completed" if verdict.decision == "allowed" else "failed",
        started_at=started,
        finished_at=finished,
        duration_s=max(0.0, (finished - started).total_seconds()),
        backend="modal" if verdict.classifier != NO_CLASSIFIER else "lambda",
        model=None if verdict.classifier == NO_CLASSIFIER else verdict.classifier,
        attempts=1,
    )
    record.steps = [s for s in record.steps if s.name != "moderate"] + [step]
    record.timings["moderate"] = step.duration_s or 0.0
    record.moderation = verdict
    record.updated_at = finished
    return record


def moderate_job(
    job_id: str,
    config: PipelineConfig,
    store: Any,
    audit: AuditLog,
    classifier: TextClassifier | None,
) -> ModerationVerdict:
    """Judge the job, store the verdict, and raise CONTENT_REFUSED for a refusal (after its audit
    entry). A re-run (a retried Lambda) judges again: the policy may have changed meanwhile, and
    only a job that has not been planned is ever here. `classifier`: `classifier_for(…)`."""
    record: JobRecord | None = store.get(job_id)
    if record is None or record.request is None:
        raise TalkstackError(ErrorCode.GENERATION_FAILED, f"job {job_id} has no record to moderate")
    settings = get_moderation_settings()
    policy = policy_from(settings.policy)
    started = utc_now()
    key = submitter_key(record.source, config)
    verdict = moderate(record, policy, key, classifier, settings)
    if verdict.decision == "refused":
        # Before the record says so (fail closed): a refusal is never left unlogged.
        actor = Actor(key or OPERATOR_ACTOR, PIPELINE_SOURCE)
        audit.record(
            actor,
            "job.refused",
            "job",
            job_id,
            category=verdict.category,
            policy_version=verdict.policy_version,
            source=verdict.source,
            field=verdict.field,
        )
    store.update(job_id, lambda current: _with_step(current, verdict, started))
    if verdict.decision == "refused":
        raise refusal(verdict)
    return verdict
