"""How long talkstack keeps what it holds: the defaults of the product plan, in one place.

Generated videos 24 hours, voice samples (and every other uploaded or dropped input) 7 days,
prompts and texts (the job records that hold requests, events, step results) 30 days; keys are
stored only as hashes. These are the defaults of the deploy settings (infra/cdk: the S3 lifecycle
rules and the Lambdas' environment) and of the pipeline's own settings (the DynamoDB TTLs the
handlers write), so a stack deployed with defaults and its handlers agree; tests/infra compares the
synthesized template with them, and tests/unit/test_retention.py the TTLs written.

S3 lifecycle rules count whole days: an object expires at the first midnight UTC after it is N days
old (1 day: between 24 and 48 hours after it was written), and S3 removes it asynchronously after
that. DynamoDB's TTL deletes an item after its `expires_at`, usually within days. Both are upper
bounds set by AWS, not exact clocks: docs/safety.md says what that means for the 24-hour promise.
"""

from __future__ import annotations

OUTPUT_RETENTION_DAYS = 1
"""Published videos and voice clones (the output bucket): the plan's 24 hours, S3's smallest unit."""
WORK_RETENTION_DAYS = 1
"""Worker outputs, markers and cancel flags (the work bucket): they hold generated media too."""
INPUT_RETENTION_DAYS = 7
"""`inputs/` (S3 drops: manifests, photos, voice samples): the plan's 7 days for voice samples."""
UPLOAD_RETENTION_DAYS = 7
"""`uploads/` (API uploads: photos and voice samples) and their records in the table."""
RECORD_RETENTION_DAYS = 30
"""Job records (the request's texts and prompts), events, delivery logs and step results."""
AUDIT_RETENTION_DAYS = 365
"""Audit entries (ids, actions, IPs: never content) and the daily audit exports."""

DAY_S = 86400


def ttl_seconds(days: int) -> int:
    """A retention in days as a DynamoDB TTL offset in seconds (0: keep)."""
    return days * DAY_S
