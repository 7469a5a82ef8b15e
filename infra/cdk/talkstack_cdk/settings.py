"""Deployment settings: CDK context (`cdk.json`, `cdk deploy -c talkstack:key=value`), then the
environment (`TALKSTACK_CDK_<KEY>`), then defaults. Parsed once, before any construct is built, so
a typo fails `cdk synth` with the name of the setting instead of producing a broken stack.

The "cdk" group of talkstack's settings (docs/settings.md): one of the settings modules, so it may
read the environment itself; `talkstack settings` loads this file from the checkout to list it."""

from __future__ import annotations

import os
import re
from pathlib import PurePosixPath
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, StringConstraints, field_validator

from talkstack.errors import TalkstackError
from talkstack.pipeline.config import (
    AwsRegion,
    EngineTask,
    S3Grant,
    check_default_models,
    parse_grants,
    split_csv,
    split_pairs,
)
from talkstack.safety.policy import BUNDLED_POLICY_DIR, load_policy
from talkstack.settings import retention
from talkstack.settings.modal_deploy import ModalDeploySettings, WorkerFamily

CONTEXT_PREFIX = "talkstack:"
ENV_PREFIX = "TALKSTACK_CDK_"

BucketList = Annotated[list[str], BeforeValidator(split_csv)]
BackendMap = Annotated[dict[str, Literal["local", "modal"]], BeforeValidator(split_pairs)]
DefaultModels = Annotated[dict[EngineTask, str], BeforeValidator(split_pairs)]
RegionMap = Annotated[dict[str, AwsRegion], BeforeValidator(split_pairs)]
GrantList = Annotated[list[S3Grant], BeforeValidator(parse_grants)]
MODAL_TIMEOUTS: dict[WorkerFamily, str] = {
    family: f"{family}_timeout_s" for family in ("avatar", "stitch", "video", "voice", "compose", "matte")
}
"""The Modal classes' timeouts the pipeline plans steps within: DeploySettings fields, named as the
ModalDeploySettings fields that `modal deploy` reads (TALKSTACK_<FAMILY>_TIMEOUT_S)."""
MODAL_CAPS: dict[WorkerFamily, str] = {
    family: f"{family}_max_containers" for family in ("avatar", "voice", "video", "matte")
}
"""The Modal classes' container caps the Plan step bounds a job's parallel work by: a parallel
avatar's chunks by the avatar class's, a composition's scenes by those of every class their steps
run on (voice, avatar, video, matte)."""
MODAL_SHARED: tuple[str, ...] = (*MODAL_TIMEOUTS.values(), *MODAL_CAPS.values())
"""Every ModalDeploySettings field the Lambdas read too (the Plan step: timeouts and container
caps): each is a DeploySettings field of the same name, passed to the Lambdas as TALKSTACK_<NAME>,
and must equal what `modal deploy` got."""


def _modal_timeout_default(family: WorkerFamily) -> int:
    return _modal_default(MODAL_TIMEOUTS[family])


def _modal_default(name: str) -> int:
    default = ModalDeploySettings.model_fields[name].default
    assert isinstance(default, int)
    return default


# CloudWatch Logs retention periods (days) and their aws_logs.RetentionDays names.
LOG_RETENTION = {
    1: "ONE_DAY", 3: "THREE_DAYS", 5: "FIVE_DAYS", 7: "ONE_WEEK", 14: "TWO_WEEKS", 30: "ONE_MONTH",
    60: "TWO_MONTHS", 90: "THREE_MONTHS", 120: "FOUR_MONTHS", 150: "FIVE_MONTHS", 180: "SIX_MONTHS",
    365: "ONE_YEAR", 400: "THIRTEEN_MONTHS", 545: "EIGHTEEN_MONTHS", 731: "TWO_YEARS",
    1096: "THREE_YEARS", 1827: "FIVE_YEARS", 3653: "TEN_YEARS",
}  # fmt: skip


def _blank_is_none(value: object) -> object:
    return None if value in ("", "none", "None") else value


class DeploySettings(BaseModel):
    """Every knob of the stack. Context keys are the field names in camelCase after `talkstack:`."""

    model_config = ConfigDict(
        frozen=True, extra="forbid", populate_by_name=True, use_attribute_docstrings=True
    )

    stack_name: str = Field("talkstack", pattern=r"^[a-z][a-z0-9-]{1,30}[a-z0-9]$")
    """CloudFormation stack name, and the prefix of every named resource."""

    # Retention defaults: the product plan's, from talkstack/settings/retention.py (the pipeline's
    # settings default to the same numbers; tests/infra compares the template with them). S3
    # expires an object at the first midnight UTC after it is N days old.
    work_retention_days: int = Field(retention.WORK_RETENTION_DAYS, ge=1, le=30)
    """Work bucket (worker outputs, markers, cancel flags, and outputs held for review under
    `held/`: an operator must release or delete a held job within this many days)."""
    upload_retention_days: int = Field(retention.UPLOAD_RETENTION_DAYS, ge=1, le=365)
    """`uploads/` in the input bucket (API uploads: photos, voice samples), and their records in the
    table (TALKSTACK_UPLOAD_RETENTION_DAYS)."""
    input_retention_days: int = Field(retention.INPUT_RETENTION_DAYS, ge=0, le=3650)
    """`inputs/` in the input bucket: manifests, photos and voice samples (0 = keep forever).
    Voice samples are biometric data: keep this short unless you need them."""
    output_retention_days: int = Field(retention.OUTPUT_RETENTION_DAYS, ge=0, le=3650)
    """Published videos and voice clones in the output bucket (0 = keep forever). 1 = 24 hours, at
    S3's day granularity: gone between 24 and 48 hours after publishing."""
    record_retention_days: int = Field(retention.RECORD_RETENTION_DAYS, ge=0, le=3650)
    """Job records (request texts and webhook URLs among them), events, webhook delivery logs and
    step results in the table expire this many days after their last write (0 = keep).
    `GET /v1/usage` and job lists only see what is kept."""
    audit_retention_days: int = Field(retention.AUDIT_RETENTION_DAYS, ge=0, le=3650)
    """Audit entries in the table, and the daily exports in the audit bucket, expire after this many
    days (0 = keep). Longer than records: investigations look back further than a job lives."""
    log_retention_days: int = 30
    """CloudWatch Logs retention of every log group the stack creates (a CloudWatch period)."""

    worker_backend: Literal["local", "modal"] = "modal"
    """Where engine steps run by default. In AWS that is Modal; `local` exists for the local stack."""
    model_backends: BackendMap = Field(default_factory=dict)
    """Per-model override (`multitalk=modal,...`), as TALKSTACK_MODEL_BACKENDS."""
    default_models: DefaultModels = Field(
        default_factory=lambda: {"avatar": "multitalk", "voice": "chatterbox", "video": "ltx-video"}
    )
    """The model a request gets when it names none, as TALKSTACK_DEFAULT_MODELS. GPU models: the lite
    engines the contract defaults to run only in the local stack."""
    modal_environment: Annotated[str | None, BeforeValidator(_blank_is_none)] = None
    """Modal environment the worker apps were deployed to (default: the workspace's default)."""
    readable_buckets: BucketList = Field(default_factory=list)
    """Buckets besides the input bucket that directly started executions (an operator's
    StartExecution) may read media from (read-only access). API keys and drop folders read only
    their own namespace and read_grants."""
    writable_buckets: BucketList = Field(default_factory=list)
    """Buckets besides the output bucket that S3 drops and direct starts may publish to. An API key
    publishes only under its own folder of the output bucket, or under a write grant."""
    read_grants: GrantList = Field(default_factory=list)
    """`grantee=s3://bucket/prefix/` pairs, as TALKSTACK_READ_GRANTS: what an API key (`<key id>`,
    `*` = every key) or a drop folder (`drop:<folder>`, `drop:*`) may read besides its own uploads,
    outputs or folder. The read roles (api, validate, segment, dispatch) get read access there."""
    write_grants: GrantList = Field(default_factory=list)
    """The same for publishing (`output.bucket`), as TALKSTACK_WRITE_GRANTS: API keys only. finalize
    and fail get write and delete access there, the read roles read access (a key reads its outputs)."""
    bucket_regions: RegionMap = Field(default_factory=dict)
    """`bucket=region` pairs for buckets whose region the Lambdas cannot look up, as
    TALKSTACK_BUCKET_REGIONS (pre-signed URLs are signed for each bucket's own region)."""
    quality_rerender_chunks: bool = True
    """Render a parallel avatar chunk once more when its quality report fails, as
    TALKSTACK_QUALITY_RERENDER_CHUNKS (the pass marks themselves are the workers': set
    TALKSTACK_QUALITY_* where `modal deploy` runs; docs/quality.md)."""
    # Content safety (docs/safety.md): passed to the Lambdas as the pipeline's and the moderation
    # group's TALKSTACK_* variables of the same names.
    consent_required: bool = True
    """TALKSTACK_CONSENT_REQUIRED: a user's photo or reference voice needs a consent attestation."""
    voice_clone_consent_clip: Literal["required", "optional"] = "optional"
    """TALKSTACK_VOICE_CLONE_CONSENT_CLIP: `required` makes voice clones bring a recorded clip."""
    scan_not_scanned: Literal["publish", "hold"] = "publish"
    """TALKSTACK_SCAN_NOT_SCANNED: what finalize does with an output no image classifier scanned."""
    moderation_policy: str | None = None
    """TALKSTACK_MODERATION_POLICY: the operator's policy, inline JSON (starting with `{`) or a file
    put in talkstack/assets/policy/ (bundled with the Lambda code) named by that relative path
    (`talkstack/assets/policy/<name>.json`); unset, the shipped policy (default.json there).
    Synth loads it and fails on a policy every job would fail on."""
    moderation_classifier: Literal["auto", "modal", "none"] = "auto"
    """TALKSTACK_MODERATION_CLASSIFIER: whether texts also go to the text-safety classifier on Modal."""
    moderation_classifier_unavailable: Literal["fail", "allow"] = "fail"
    """TALKSTACK_MODERATION_CLASSIFIER_UNAVAILABLE: fail a job the classifier cannot judge, or allow it."""

    avatar_timeout_s: int = Field(_modal_timeout_default("avatar"), gt=0)
    """The avatar Modal class's timeout, as TALKSTACK_AVATAR_TIMEOUT_S for the Lambdas (Plan bounds
    step timeouts and URL lifetimes by it): must be what `modal deploy` used. Unset, it is that
    variable's value in this environment (or the apps' default)."""
    stitch_timeout_s: int = Field(_modal_timeout_default("stitch"), gt=0)
    """The same for the Stitcher (TALKSTACK_STITCH_TIMEOUT_S)."""
    video_timeout_s: int = Field(_modal_timeout_default("video"), gt=0)
    """The same for the video classes (TALKSTACK_VIDEO_TIMEOUT_S)."""
    voice_timeout_s: int = Field(_modal_timeout_default("voice"), gt=0)
    """The same for the voice classes (TALKSTACK_VOICE_TIMEOUT_S)."""
    compose_timeout_s: int = Field(_modal_timeout_default("compose"), gt=0)
    """The same for the Composer, which assembles compositions (TALKSTACK_COMPOSE_TIMEOUT_S)."""
    matte_timeout_s: int = Field(_modal_timeout_default("matte"), gt=0)
    """The same for the matting worker of composition scenes (TALKSTACK_MATTE_TIMEOUT_S)."""
    avatar_max_containers: int = Field(_modal_default("avatar_max_containers"), gt=0)
    """The avatar Modal class's container cap, as TALKSTACK_AVATAR_MAX_CONTAINERS for the Lambdas (Plan
    runs no more chunks of a parallel avatar at once): must be what `modal deploy` used. Unset, it is
    that variable's value in this environment (or the apps' default)."""
    voice_max_containers: int = Field(_modal_default("voice_max_containers"), gt=0)
    """The same for the voice classes (TALKSTACK_VOICE_MAX_CONTAINERS): Plan runs no more scenes of a
    composition at once than the classes of their steps may run containers."""
    video_max_containers: int = Field(_modal_default("video_max_containers"), gt=0)
    """The same for the video classes (TALKSTACK_VIDEO_MAX_CONTAINERS)."""
    matte_max_containers: int = Field(_modal_default("matte_max_containers"), gt=0)
    """The same for the matte classes (TALKSTACK_MATTE_MAX_CONTAINERS)."""

    alarm_email: Annotated[
        Annotated[str, StringConstraints(pattern=r"^[^@\s]+@[^@\s]+\.[^@\s]+$")] | None,
        BeforeValidator(_blank_is_none),
    ] = None
    """Subscribed to the alarm topic (AWS e-mails a confirmation link first)."""
    dispatch_concurrency: int = Field(20, ge=0)
    """Reserved concurrency of the dispatch Lambda: at most this many GPU containers are asked for at
    once, whatever floods in. 0 = unreserved (new accounts whose quota is 10 cannot reserve any)."""
    ingest_concurrency: int = Field(10, ge=0)
    """Reserved concurrency of the ingest Lambda (S3 drops): a bulk upload queues in Lambda's async
    queue instead of starting hundreds of executions at once. 0 = unreserved."""
    notify_concurrency: int = Field(20, ge=0)
    """Reserved concurrency of the notify Lambda (SNS + webhooks): a flood of events, or receivers
    that answer slowly, hold at most this many notify runs (each bounded by the webhook delivery
    deadline); the rest wait in Lambda's async queue (at most an hour, then its dead-letter queue).
    0 = unreserved."""
    api_throttle_rps: float = Field(50, gt=0)
    """Stage-wide API Gateway throttle (steady requests/second); tiers are limited further."""
    api_throttle_burst: int = Field(100, ge=1)
    """Stage-wide burst (requests API Gateway admits at once above the steady rate)."""
    retain_data: bool = True
    """Keep the buckets, the jobs table and the keys on `cdk destroy` (false: delete them; buckets
    must be empty)."""

    @field_validator("moderation_policy")
    @classmethod
    def _policy_loads(cls, value: str | None) -> str | None:
        """Synth refuses a policy every job would fail on (MODERATION_POLICY_INVALID at run time),
        and a path the Lambda bundle does not carry (only talkstack/assets/policy/*.json travels)."""
        if not value:
            return value
        if not value.lstrip().startswith("{"):
            path = PurePosixPath(value)
            if str(path.parent) != BUNDLED_POLICY_DIR or path.suffix != ".json":
                raise ValueError(
                    f"{value!r}: a policy file must be {BUNDLED_POLICY_DIR}/<name>.json (only that "
                    "folder is bundled with the Lambda code), or the policy as inline JSON"
                )
        try:
            load_policy(value)
        except TalkstackError as exc:
            raise ValueError(exc.message) from exc
        return value

    @field_validator("log_retention_days")
    @classmethod
    def _log_retention(cls, value: int) -> int:
        if value not in LOG_RETENTION:
            raise ValueError(f"must be one of CloudWatch's retention periods {sorted(LOG_RETENTION)}")
        return value

    @field_validator("default_models")
    @classmethod
    def _known_models(cls, value: dict[str, str]) -> dict[str, str]:
        check_default_models(value, "default_models")
        return value

    @field_validator("readable_buckets", "writable_buckets")
    @classmethod
    def _bucket_names(cls, value: list[str]) -> list[str]:
        bad = [name for name in value if not re.fullmatch(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]", name)]
        if bad:
            raise ValueError(f"not S3 bucket names: {bad}")
        return value

    @field_validator("write_grants")
    @classmethod
    def _write_grants_name_api_keys(cls, value: list[S3Grant]) -> list[S3Grant]:
        drops = [g.grantee for g in value if g.grantee.startswith("drop:")]
        if drops:
            raise ValueError(f"{drops[0]!r}: write grants are for API keys (`<key id>` or `*`)")
        return value


def grants_value(grants: list[S3Grant]) -> str:
    """Grants back in TALKSTACK_READ_GRANTS / TALKSTACK_WRITE_GRANTS syntax."""
    return ",".join(f"{g.grantee}=s3://{g.bucket}/{g.prefix}" for g in grants)


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(part.capitalize() for part in rest)


def context_key(name: str) -> str:
    """The CDK context key of a field (`stack_name` → `talkstack:stackName`)."""
    return CONTEXT_PREFIX + _camel(name)


def load_settings(context: dict[str, Any], environ: dict[str, str] | None = None) -> DeploySettings:
    """Context wins over the environment; unknown `talkstack:` context keys are refused.

    The Modal timeouts and container caps also come from the variables `modal deploy` reads
    (TALKSTACK_AVATAR_TIMEOUT_S, …, TALKSTACK_MATTE_MAX_CONTAINERS) when neither context nor
    TALKSTACK_CDK_* sets them, so one shell deploys both alike; where
    both are set and differ, synth fails instead of planning steps the workers cannot finish."""
    environ = dict(os.environ if environ is None else environ)
    fields = {_camel(name): name for name in DeploySettings.model_fields}
    values: dict[str, Any] = {}
    for name in DeploySettings.model_fields:
        env = environ.get(ENV_PREFIX + name.upper())
        if env is not None:
            values[name] = env
    for key, value in context.items():
        if not key.startswith(CONTEXT_PREFIX):
            continue
        short = key[len(CONTEXT_PREFIX) :]
        if short not in fields:
            raise ValueError(f"unknown setting {key!r}; known: {sorted(CONTEXT_PREFIX + k for k in fields)}")
        values[fields[short]] = value
    chosen = DeploySettings.model_validate(values)
    for name in MODAL_SHARED:
        variable = f"TALKSTACK_{name.upper()}"
        modal = environ.get(variable)
        if modal is None:
            continue
        if name not in values:
            values[name] = modal  # validated below, under the setting's name
            continue
        if modal.strip() != str(getattr(chosen, name)):
            raise ValueError(
                f"{context_key(name)} is {getattr(chosen, name)} but {variable} (what `modal deploy` "
                f"reads) is {modal!r}; give both the value the Modal apps were deployed with"
            )
    return DeploySettings.model_validate(values)
