"""The input moderation verdict a job's record carries (`record.moderation`).

Written by the Moderate state (and by `talkstack render` for its own run) before any engine runs:
which policy version judged the job, whether a classifier ran and which, and, for a refusal, the
category and the field that tripped it. Never the text itself, nor the term that matched: the
record is shown to the tenant, and the operator's term lists are the operator's.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field

from talkstack.contract.fields import StrictModel

ModerationDecision = Literal["allowed", "refused"]
RefusalSource = Literal["policy", "classifier"]

NO_CLASSIFIER = "none"
"""`classifier` when only the policy's terms and patterns ran (the local and lite backends, or a
stack that turned the classifier off): never pretend a classifier looked at the text."""

LANGUAGE_CATEGORY = "language_not_allowed"
"""The category of a refusal for a declared language the policy does not allow."""


class ModerationVerdict(StrictModel):
    """What input moderation decided about a job's texts."""

    decision: ModerationDecision
    policy_version: Annotated[str, Field(min_length=1, max_length=100)]
    classifier: Annotated[str, Field(min_length=1, max_length=200)] = NO_CLASSIFIER
    """The text-safety model that also judged the texts (a Hugging Face id), or `none`."""
    fields: list[str] = Field(default_factory=list)
    """The request fields that were checked (`inputs.text`, `options.prompt`, …)."""
    category: str | None = None
    """Refused: the policy category (`hate`, `sexual_minors`, `language_not_allowed`, …)."""
    source: RefusalSource | None = None
    """Refused: whether the policy's terms and patterns or the classifier decided."""
    field: str | None = None
    """Refused: the field whose text tripped the check (the classifier judges a job's texts
    together: its refusals name every field it judged, `inputs.text or options.prompt`)."""
    allowed_by_key: list[str] = Field(default_factory=list)
    """Categories that matched but the submitting key's override allows (kept for the operator)."""
    scores: dict[str, Annotated[float, Field(ge=0, le=1)]] = Field(default_factory=dict)
    """The classifier's highest probability per risk over the checked texts (empty without one)."""
