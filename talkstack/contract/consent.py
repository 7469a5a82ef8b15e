"""A consent attestation: the request's statement that the person whose face is animated or whose
voice is cloned agreed to it.

It is an attestation, not a proof: talkstack records who vouched for what, when, and keeps the
recorded consent clip when one is given (docs/safety.md). Which jobs need one, and for which scope,
is decided by talkstack.safety.consent; the Validate step (and the API, before it answers) enforce it.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Annotated, Literal

from pydantic import AfterValidator, AwareDatetime, StringConstraints, model_validator

from talkstack.contract.fields import MediaRef, StrictModel, not_blank

ConsentScope = Literal["likeness", "voice", "both"]
"""likeness: animating the person's face; voice: cloning the person's voice; both."""

CONSENT_CLOCK_SKEW = timedelta(minutes=5)
"""`attested_at` may lie this far in the future (the attesting system's clock may run ahead)."""
CONSENT_MAX_AGE = timedelta(days=3650)
"""An attestation older than ten years is refused as a mistake (a wrong year, a zero timestamp)."""

PersonName = Annotated[
    str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200), AfterValidator(not_blank)
]
StatementText = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=2000)]
StatementId = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9][A-Za-z0-9._:/-]{0,127}$")]


def _check_attested_at(value: datetime) -> datetime:
    value = value.astimezone(UTC)
    now = datetime.now(UTC)
    if value > now + CONSENT_CLOCK_SKEW:
        raise ValueError(f"is in the future ({value.isoformat()}); give the time consent was given")
    if value < now - CONSENT_MAX_AGE:
        raise ValueError(f"is more than ten years ago ({value.isoformat()}); give the time consent was given")
    return value


class ConsentAttestation(StrictModel):
    """Who vouches that `subject` agreed to having their likeness and/or voice used, and when."""

    attested_by: PersonName
    """Who attests: a name, an e-mail address, or an id in the operator's own consent records."""
    attested_at: Annotated[AwareDatetime, AfterValidator(_check_attested_at)]
    """When consent was given: ISO-8601 with a time zone, not in the future, at most ten years ago."""
    subject: PersonName
    """The person whose face is animated or whose voice is cloned."""
    scope: ConsentScope
    """What the person agreed to: `likeness` (their face), `voice` (a clone of their voice), or `both`."""
    statement: StatementText | None = None
    """The consent statement's text, as the person agreed to it. Give this or `statement_id`."""
    statement_id: StatementId | None = None
    """Or: the id of a statement in the operator's records (e.g. `consent-form-v3`)."""
    clip: MediaRef | None = None
    """A recorded consent clip: audio or video of the person speaking their consent (WAV, MP3, M4A,
    MP4, FLAC, OGG; 2-120 s of speech). Required for voice clones when the operator sets
    TALKSTACK_VOICE_CLONE_CONSENT_CLIP=required. Kept with the job's inputs."""

    @model_validator(mode="after")
    def _one_statement(self) -> ConsentAttestation:
        if self.statement is None and self.statement_id is None:
            raise ValueError("give the consent statement's text (statement) or its id (statement_id)")
        if self.statement is not None and self.statement_id is not None:
            raise ValueError("give either statement or statement_id, not both")
        return self

    def covers(self, scope: Literal["likeness", "voice"]) -> bool:
        return self.scope in (scope, "both")
