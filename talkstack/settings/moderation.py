"""The "moderation" group: which policy judges the texts a job turns into media, and whether an open
text-safety classifier judges them too (docs/safety.md).

Read by the Moderate state of the pipeline and by `talkstack render`, so a job through the stack
and a render on the command line are judged by the same policy.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class ModerationSettings(BaseSettings):
    """Input moderation: the operator's policy file and the text-safety classifier."""

    model_config = SettingsConfigDict(
        env_prefix="TALKSTACK_MODERATION_", frozen=True, use_attribute_docstrings=True
    )

    policy: str | None = None
    """The moderation policy: a path to a JSON policy file (bundled with the Lambda code or on the
    machine running `talkstack render`), or the policy itself as inline JSON (a value starting
    with `{`). Unset: the shipped policy, talkstack/assets/policy/default.json."""
    classifier: Literal["auto", "modal", "none"] = "auto"
    """Whether the texts also go to the text-safety classifier on Modal (modal_workers/text_safety.py):
    `auto` when the stack's worker backend is `modal`, `modal` always, `none` never (the verdict
    then says `classifier: none`: only the policy's terms and patterns ran)."""
    classifier_timeout_s: float = Field(240.0, gt=0, le=280)
    """How long the Moderate step waits for the classifier (a cold container loads ~11 GB of
    weights first); within the moderate Lambda's 290 s."""
    classifier_unavailable: Literal["fail", "allow"] = "fail"
    """When the classifier cannot answer (not deployed, timed out, Modal down): `fail` the job with
    MODERATION_UNAVAILABLE (nothing unjudged is rendered), or `allow` it on the policy's verdict
    alone (the verdict then says `classifier: none`)."""


@lru_cache(maxsize=1)
def get_moderation_settings() -> ModerationSettings:
    return ModerationSettings()
