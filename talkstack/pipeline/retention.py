"""Retention as S3 lifecycle rules and DynamoDB TTLs, from the settings' values (one source:
talkstack/settings/retention.py holds the defaults, DeploySettings and PipelineConfig the values).

The CDK storage construct and the local stack both build their buckets' expiry rules with
`Retention.bucket_rules`, and every TTL the handlers write comes from the same numbers
(JobStore: records; Uploads: upload records; AuditLog: audit entries).
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any, Literal

from talkstack.contract.worker import WORK_BUCKET_PREFIXES
from talkstack.pipeline.audit import EXPORT_PREFIX as AUDIT_PREFIX
from talkstack.pipeline.tenancy import UPLOADS_PREFIX
from talkstack.settings import retention as plan

INPUT_PREFIX = "inputs/"
"""Where S3-drop manifests and their media live in the input bucket."""

BucketRole = Literal["input", "work", "output", "audit"]


@dataclass(frozen=True)
class ExpiryRule:
    """Objects under `prefix` ("" = the whole bucket) expire `days` after they are written."""

    prefix: str
    days: int

    @property
    def rule_id(self) -> str:
        return f"expire-{self.prefix.rstrip('/')}" if self.prefix else "expire-"


@dataclass(frozen=True)
class Retention:
    """Days each kind of data is kept (0: keep; S3 rules are then left out)."""

    output_retention_days: int = plan.OUTPUT_RETENTION_DAYS
    work_retention_days: int = plan.WORK_RETENTION_DAYS
    input_retention_days: int = plan.INPUT_RETENTION_DAYS
    upload_retention_days: int = plan.UPLOAD_RETENTION_DAYS
    record_retention_days: int = plan.RECORD_RETENTION_DAYS
    audit_retention_days: int = plan.AUDIT_RETENTION_DAYS

    @classmethod
    def of(cls, settings: Any) -> Retention:
        """The values `settings` (DeploySettings, PipelineConfig) has; the plan's for the others."""
        return cls(**{f.name: getattr(settings, f.name) for f in fields(cls) if hasattr(settings, f.name)})

    def bucket_rules(self) -> dict[BucketRole, list[ExpiryRule]]:
        """Each bucket's expiry rules. The output bucket expires whole (every published object is
        generated media or its result.json); the audit bucket only its exports."""
        rules: dict[BucketRole, list[ExpiryRule]] = {
            "input": [
                ExpiryRule(INPUT_PREFIX, self.input_retention_days),
                ExpiryRule(UPLOADS_PREFIX, self.upload_retention_days),
            ],
            "work": [ExpiryRule(prefix, self.work_retention_days) for prefix in WORK_BUCKET_PREFIXES],
            "output": [ExpiryRule("", self.output_retention_days)],
            "audit": [ExpiryRule(AUDIT_PREFIX, self.audit_retention_days)],
        }
        return {role: [r for r in found if r.days > 0] for role, found in rules.items()}

    def lifecycle_configuration(self, role: BucketRole) -> dict[str, Any]:
        """boto3's `LifecycleConfiguration` for a bucket of `role` (the local stack's)."""
        return {
            "Rules": [
                {
                    "ID": rule.rule_id,
                    "Status": "Enabled",
                    "Filter": {"Prefix": rule.prefix},
                    "Expiration": {"Days": rule.days},
                }
                for rule in self.bucket_rules()[role]
            ]
        }
