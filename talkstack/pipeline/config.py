"""Pipeline configuration: parsed once from the environment (``TALKSTACK_*``) into a frozen model.

The same variables configure the Lambdas in AWS (set by the CDK stack) and in local mode (set by
`talkstack.local` before the handlers are imported). A missing or malformed variable fails the
first invocation with a message naming it, instead of failing later somewhere deep in a handler.

This is the "pipeline" group of talkstack's settings (see `talkstack.settings`, docs/settings.md).
It lives here rather than in talkstack/settings/ because a validator needs the engine registry, and
the settings package is the bottom layer that imports nothing above it.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache
from typing import Annotated, Literal

from pydantic import BeforeValidator, Field, SecretStr, StringConstraints, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from talkstack.contract.fields import DEFAULT_MODELS, MatteModelId, MediaRef, TaskKind
from talkstack.engines.registry import get_model
from talkstack.errors import TalkstackError
from talkstack.pipeline.audit import DEFAULT_AUDIT_RETENTION_DAYS
from talkstack.settings import retention as plan


def split_csv(value: object) -> object:
    if isinstance(value, str):
        return [item.strip() for item in value.split(",") if item.strip()]
    return value


def split_pairs(value: object) -> object:
    if isinstance(value, str):
        pairs = [item.split("=", 1) for item in value.split(",") if item.strip()]
        bad = [item for item in pairs if len(item) != 2]
        if bad:
            raise ValueError(f"expected model=value pairs separated by commas, got {value!r}")
        return {k.strip(): v.strip() for k, v in pairs}
    return value


GRANTEE_RE = re.compile(r"^(?:\*|[a-z0-9]{1,32}|drop:\*|drop:[^,=*]+)$")
"""An API key id, `*` (every API key), `drop:<folder under the input prefix>` or `drop:*` (every
drop folder)."""


@dataclass(frozen=True)
class S3Grant:
    """An operator's grant: `grantee` may read (or publish) under `s3://bucket/prefix`."""

    grantee: str
    bucket: str
    prefix: str
    """"" (the whole bucket) or a folder ending in '/': `s3://b/team` grants `team/…`, never `teamwork/…`."""

    def holds(self, bucket: str, key: str) -> bool:
        return bucket == self.bucket and key.startswith(self.prefix)


UPLOADS_AREA = "uploads/"
"""The API's uploads in the input bucket (`uploads/<key id>/…`; the API's own layout, api/uploads.py)."""
TENANTS_AREA = "tenants/"
"""The API keys' outputs in the output bucket (`tenants/<key id>/…`, pipeline/tenancy.py)."""


def _overlaps(prefix: str, area: str) -> bool:
    """Whether the objects under `prefix` and under `area` can meet ("" is the whole bucket)."""
    return prefix.startswith(area) or area.startswith(prefix)


def parse_grants(value: object) -> object:
    """`grantee=s3://bucket/prefix/,…` → S3Grants (a grantee may appear several times)."""
    if not isinstance(value, str):
        return value
    grants = []
    for item in (part.strip() for part in value.split(",")):
        if not item:
            continue
        grantee, sep, location = (s.strip() for s in item.partition("="))
        if not sep or not GRANTEE_RE.match(grantee):
            raise ValueError(
                f"{item!r}: expected grantee=s3://bucket/prefix/, the grantee being an API key id, *, "
                "drop:<folder> or drop:*"
            )
        bucket, _, prefix = location.removeprefix("s3://").partition("/")
        if not location.startswith("s3://"):
            raise ValueError(f"{item!r}: the location must be s3://bucket/ or s3://bucket/prefix/")
        prefix = prefix.strip("/")
        try:  # the media reference rules: a valid bucket name, no '.'/'..' or empty segments
            MediaRef.parse(f"s3://{bucket}/{prefix or 'x'}")
        except ValueError as exc:
            raise ValueError(f"{item!r}: {exc}") from None
        grants.append(S3Grant(grantee, bucket, f"{prefix}/" if prefix else ""))
    return grants


# Environment variables hold "a,b,c" / "a=x,b=y" (NoDecode stops pydantic-settings expecting JSON).
BucketList = Annotated[list[str], NoDecode, BeforeValidator(split_csv)]
BackendName = Literal["local", "modal"]
BackendMap = Annotated[dict[str, BackendName], NoDecode, BeforeValidator(split_pairs)]
EngineMap = Annotated[dict[str, str], NoDecode, BeforeValidator(split_pairs)]
EngineTask = Literal["avatar", "voice", "video"]
"""The tasks an engine model serves (a composition runs them per scene, so it has no default model)."""
DefaultModels = Annotated[dict[EngineTask, str], NoDecode, BeforeValidator(split_pairs)]
AwsRegion = Annotated[str, StringConstraints(pattern=r"^[a-z]{2}(-[a-z]+)+-\d+$")]
RegionMap = Annotated[dict[str, AwsRegion], NoDecode, BeforeValidator(split_pairs)]
Grants = Annotated[list[S3Grant], NoDecode, BeforeValidator(parse_grants)]


def check_default_models(defaults: Mapping[str, str], setting: str) -> None:
    """Each default must be a known model of its task (a typo fails at start-up, not per job)."""
    for task, model_id in defaults.items():
        try:
            model = get_model(model_id)
        except TalkstackError as exc:
            raise ValueError(f"{setting}: {exc.message}") from exc
        if model.task != task:
            raise ValueError(f"{setting}: {model_id} is a {model.task} model, not {task}")


MAX_DELIVERY_DEADLINE_S = 240.0
"""The longest webhook delivery deadline allowed: the notify Lambda's timeout (300 s,
infra/cdk/talkstack_cdk/functions.py, checked by tests/infra) less a minute for SNS, the table and
loading the key's endpoints."""


class PipelineConfig(BaseSettings):
    """The Lambdas' configuration (the CDK stack sets it on every function; the local stack in-process)."""

    model_config = SettingsConfigDict(
        env_prefix="TALKSTACK_", frozen=True, extra="ignore", use_attribute_docstrings=True
    )

    input_bucket: str
    """Where manifests and media are dropped (the ingest Lambda listens to it)."""
    output_bucket: str
    """Where finished outputs are published, unless a request names its own output bucket."""
    work_bucket: str
    """Temporary outputs and worker markers (`work/…`, `markers/…`); expired by a lifecycle rule."""
    jobs_table: str
    """DynamoDB table of job records, events, webhook deliveries, step results and API keys."""
    events_topic_arn: str
    """SNS topic every job event is published to."""
    ingest_dlq_url: str
    """SQS queue where S3 drops that could not be turned into a job are reported."""
    state_machine_arn: str
    """The job state machine (Step Functions) that ingest and the API start executions of."""
    notify_function: str
    """Name or ARN of the notify Lambda (invoked asynchronously for queued/started/progress events)."""

    input_prefix: str = "inputs/"
    """Key prefix in the input bucket under which dropped manifests start a job."""
    manifest_name: str = "job.json"
    """File name of a dropped manifest (`inputs/<name>/job.json`)."""
    readable_buckets: BucketList = Field(default_factory=list)
    """Buckets besides the input bucket that requests may read media from (comma-separated)."""
    writable_buckets: BucketList = Field(default_factory=list)
    """Buckets besides the output bucket that requests may publish to (comma-separated)."""
    read_grants: Grants = Field(default_factory=list)
    """Extra S3 locations a tenant may read media from, as `grantee=s3://bucket/prefix/` pairs
    (comma-separated; a grantee may repeat): the grantee is an API key id, `*` (every API key),
    `drop:<folder>` (the manifests in `inputs/<folder>/`) or `drop:*` (every drop folder). Without
    a grant an API key reads only its uploads and its own outputs, a drop folder only itself
    (docs/api.md#inputs-and-outputs). The stack's role must be able to read a granted bucket."""
    write_grants: Grants = Field(default_factory=list)
    """Buckets besides the output bucket that an API key may publish to (`output.bucket`), same
    syntax but for API keys only (`<key id>` or `*`). A key's own grant publishes under its prefix,
    a `*` grant under `<prefix>tenants/<key id>/`."""
    bucket_regions: RegionMap = Field(default_factory=dict)
    """The region of a bucket, as `bucket=region` pairs (TALKSTACK_BUCKET_REGIONS), for buckets whose
    region cannot be looked up (a bucket policy that denies even HeadBucket). Pre-signed URLs are
    signed for each bucket's region on its regional endpoint; unlisted buckets are looked up once."""

    worker_backend: BackendName = "local"
    """Where engine steps run unless `model_backends` says otherwise: `local` = the worker pool of
    the local stack (`talkstack up`, tests); `modal` = the deployed Modal apps (modal_workers/)."""
    model_backends: BackendMap = Field(default_factory=dict)
    """Per-model override, e.g. `multitalk=modal,lite-avatar=local` (TALKSTACK_MODEL_BACKENDS)."""
    default_models: DefaultModels = Field(default_factory=dict)
    """The model a request gets for a task when it names none, e.g. `avatar=multitalk,voice=chatterbox`
    (TALKSTACK_DEFAULT_MODELS). Tasks not listed keep the contract's defaults (the lite engines, which
    only the local stack runs); the CDK stack sets GPU models here."""
    matte_model: MatteModelId = "lite-matte"
    """The model that cuts people out of composition scenes (layout.cutout) when a request names
    none in options.matte_model."""
    local_engines: EngineMap = Field(default_factory=dict)
    """GPU models the local pool may run in process, as `model=package.module:factory` (a local
    GPU box, or tiny random models in tests); lite models always run locally."""
    modal_token_secret: str | None = None
    """Secrets Manager secret (name or ARN) holding {"token_id": …, "token_secret": …}: the Modal
    token the dispatch step uses. Never in code or in plain environment variables."""
    modal_environment: str | None = None
    """Modal environment the worker apps were deployed to (default: the workspace's default)."""

    webhook_secret: SecretStr | None = None
    """Standard Webhooks signing secret (`whsec_…`); receivers verify every POST with it."""
    webhook_secret_id: str | None = None
    """Or: the Secrets Manager secret (name or ARN) holding it, read by notify (the CDK stack's way:
    the secret never sits in an environment variable). A value without `whsec_` gets the prefix."""
    allow_loopback_webhooks: bool = False
    """Local mode only: allow webhooks to 127.0.0.1 / localhost."""
    webhook_max_attempts: int = Field(5, ge=1, le=10)
    """Deliveries tried per webhook event before it is given up."""
    webhook_initial_backoff_s: float = Field(1.0, gt=0)
    """Scale of the exponential backoff (full jitter) between delivery attempts."""
    webhook_max_backoff_s: float = Field(30.0, gt=0)
    """Longest wait between two delivery attempts."""
    webhook_timeout_s: float = Field(10.0, gt=0)
    """Total deadline of one webhook POST (connect, send, status and headers together): a receiver
    that answers slowly, even one byte at a time, is cut off when it passes."""
    webhook_delivery_deadline_s: float = Field(120.0, gt=0, le=MAX_DELIVERY_DEADLINE_S)
    """Total deadline of one event's delivery to one target: every attempt and every wait between
    them (an attempt that could not end in time is not started). A job's webhook and its key's
    endpoints are served at once, so notify ends within this, well inside its Lambda timeout."""
    webhook_rotation_overlap_s: int = Field(86400, ge=0, le=30 * 86400)
    """After a signing secret is rotated, deliveries are signed with the old secret too for this
    long (both signatures in `webhook-signature`), so receivers can switch without losing events."""
    webhook_max_endpoints: int = Field(10, ge=0, le=100)
    """Registered webhook endpoints (`POST /v1/webhooks`) one API key may have."""
    webhook_pause_after_failures: int = Field(5, ge=0, le=100)
    """Consecutive failed deliveries to one webhook target (a registered endpoint, or a per-request
    webhook's host) after which deliveries to it are paused, not attempted; 0: never pause. Keeps a
    dead receiver from holding notify, whose concurrency every tenant shares."""
    webhook_pause_s: int = Field(60, ge=1, le=86400)
    """The first pause of a failing webhook target; it doubles each time the target fails again
    after a pause, up to `TALKSTACK_WEBHOOK_MAX_PAUSE_S`. A delivered event clears it."""
    webhook_max_pause_s: int = Field(3600, ge=1, le=7 * 86400)
    """The longest pause of a failing webhook target."""

    parallel_chunk_seconds: float = Field(20.0, gt=0)
    """Avatars with `long_audio: "parallel"` are cut into chunks of at most this much speech."""
    parallel_min_chunk_seconds: float = Field(5.0, gt=0)
    """No chunk shorter than this (a tiny tail chunk would cost a whole GPU window)."""
    parallel_overlap_seconds: float = Field(0.32, ge=0)
    """Speech rendered twice around each cut, for the crossfade (8 frames at 25 fps)."""
    parallel_max_concurrency: int = Field(16, ge=1, le=1000)
    """Most chunks of one parallel avatar rendered at once (GPU tasks): the chunk Map's concurrency
    for jobs dropped in S3 or started directly. An API job gets its key's share instead (its tier's
    `gpu_tasks` not held by the key's other jobs, docs/api.md), never more than this."""

    upload_quota_free_bytes: int = Field(1_000_000_000, ge=0)
    """Bytes of live uploads (`POST /v1/uploads` and multipart files, until they expire) a free key
    may hold; over it, `STORAGE_QUOTA_EXCEEDED`."""
    upload_quota_pro_bytes: int = Field(20_000_000_000, ge=0)
    """The same for a pro key."""
    upload_quota_enterprise_bytes: int = Field(200_000_000_000, ge=0)
    """The same for an enterprise key."""

    heartbeat_seconds: int = Field(120, ge=1)
    """A worker that stays silent this long is presumed dead (the step is retried)."""
    modal_heartbeat_seconds: int = Field(1800, ge=1)
    """The same for steps on the modal backend: a task can wait this long for a cold container,
    which loads its model before it takes the task and starts beating (avatar: ~90 GB)."""
    min_step_timeout_seconds: int = Field(300, ge=1)
    """Floor of every engine step's timeout; longer inputs get proportionally more."""
    token_ttl_hours: int = Field(48, ge=1)
    """How long a dispatched step's task token is kept for its worker's markers."""
    scan_not_scanned: Literal["publish", "hold"] = "publish"
    """What finalize does with an output no image-safety classifier scanned (the local workers'
    and the CPU ones': `result.scan.status` is `not_scanned`): publish it (the result and the
    job.completed event say not_scanned), or hold it for an operator's review like a flagged one."""
    record_retention_days: int = Field(plan.RECORD_RETENTION_DAYS, ge=0, le=3650)
    """Job records (request texts and webhook URLs among them), their events, webhook delivery logs
    and step results expire this many days after their last write (DynamoDB TTL); 0 keeps them.
    `GET /v1/usage` and job lists only see what is kept."""
    upload_retention_days: int = Field(plan.UPLOAD_RETENTION_DAYS, ge=1, le=365)
    """API uploads (photos, voice samples) are usable, and their records kept (DynamoDB TTL), this
    many days; the deploy sets it to the `uploads/` lifecycle rule's days, which removes the bytes."""
    output_retention_days: int = Field(plan.OUTPUT_RETENTION_DAYS, ge=0, le=3650)
    """Days published outputs are kept (the output bucket's lifecycle rule, set by the deploy to
    the same value; 0 keeps them). Read here so the local stack's rules and docs match the deploy."""
    progress_event_step: float = Field(0.1, gt=0, le=1)
    """Emit a job.progress event each time progress advances by this much."""

    # --- likeness and voice consent (talkstack/safety/consent.py, docs/safety.md) ---
    consent_required: bool = True
    """Refuse (CONSENT_REQUIRED) an avatar of a photo that is not a bundled sample, and any voice
    clone from a reference voice that is not one, unless the request carries a `consent`
    attestation of the right scope. false turns the check off (attestations are still recorded)."""
    voice_clone_consent_clip: Literal["required", "optional"] = "optional"
    """`required`: a voice clone's attestation must also bring a recorded consent clip
    (`consent.clip`, 2-120 s of speech), checked before any engine runs."""

    # --- the audit trail (talkstack/pipeline/audit.py) ---
    audit_retention_days: int = Field(DEFAULT_AUDIT_RETENTION_DAYS, ge=0, le=3650)
    """Audit entries (who did what: keys, jobs, uploads, download URLs, webhooks) expire from the
    table this many days after they are written; 0 keeps them. Longer than job records: a security
    review looks back further than a job's life, and entries hold ids and IPs, not content."""
    audit_bucket: str | None = None
    """Bucket of the daily JSON Lines export (`audit/<yyyy>/<mm>/<dd>.jsonl`); default: the output
    bucket (the CDK stack makes a bucket of its own that no job can write to)."""

    @model_validator(mode="after")
    def _one_webhook_secret(self) -> PipelineConfig:
        if (self.webhook_secret is None) == (self.webhook_secret_id is None):
            raise ValueError("set exactly one of TALKSTACK_WEBHOOK_SECRET and TALKSTACK_WEBHOOK_SECRET_ID")
        return self

    @model_validator(mode="after")
    def _one_webhook_attempt_fits(self) -> PipelineConfig:
        if self.webhook_delivery_deadline_s < self.webhook_timeout_s:
            raise ValueError(
                "TALKSTACK_WEBHOOK_DELIVERY_DEADLINE_S must be at least TALKSTACK_WEBHOOK_TIMEOUT_S "
                "(one attempt must fit in a delivery)"
            )
        return self

    @model_validator(mode="after")
    def _grants_keep_out_of_the_tenants_areas(self) -> PipelineConfig:
        """No grant (and no drop prefix) may reach into what the stack keeps per API key — the
        uploads (`uploads/<key id>/` of the input bucket) and the outputs (`tenants/<key id>/` of the
        output bucket) — nor may a write grant reach the drop folders: a whole-bucket grant to `*`
        would otherwise let every key read every other key's uploads."""
        reserved = [
            (self.input_bucket, UPLOADS_AREA, "the API keys' uploads"),
            (self.output_bucket, TENANTS_AREA, "the API keys' outputs"),
        ]
        if _overlaps(self.input_prefix, UPLOADS_AREA):
            raise ValueError(
                f"TALKSTACK_INPUT_PREFIX: {self.input_prefix!r} overlaps {UPLOADS_AREA!r}, where the API "
                "keeps each key's uploads; drop folders must live elsewhere (e.g. inputs/)"
            )
        for setting, grants, extra in (
            ("TALKSTACK_READ_GRANTS", self.read_grants, []),
            (
                "TALKSTACK_WRITE_GRANTS",
                self.write_grants,
                [(self.input_bucket, self.input_prefix, "drop folders")],
            ),
        ):
            for grant in grants:
                if grant.bucket == self.work_bucket:
                    raise ValueError(
                        f"{setting}: {grant.grantee}=s3://{grant.bucket}/{grant.prefix} is the work bucket "
                        "(every job's intermediate renders and markers); grant another bucket"
                    )
                for bucket, area, what in [*reserved, *extra]:
                    if grant.bucket == bucket and _overlaps(grant.prefix, area):
                        raise ValueError(
                            f"{setting}: {grant.grantee}=s3://{bucket}/{grant.prefix} overlaps "
                            f"s3://{bucket}/{area} ({what}); grant a folder outside it"
                        )
        return self

    @model_validator(mode="after")
    def _webhook_pauses_grow(self) -> PipelineConfig:
        if self.webhook_max_pause_s < self.webhook_pause_s:
            raise ValueError("TALKSTACK_WEBHOOK_MAX_PAUSE_S must be at least TALKSTACK_WEBHOOK_PAUSE_S")
        return self

    @model_validator(mode="after")
    def _write_grants_name_api_keys(self) -> PipelineConfig:
        drops = [g.grantee for g in self.write_grants if g.grantee.startswith("drop:")]
        if drops:
            raise ValueError(
                f"TALKSTACK_WRITE_GRANTS: {drops[0]!r}: write grants are for API keys (a drop folder "
                "publishes to the output bucket or TALKSTACK_WRITABLE_BUCKETS)"
            )
        return self

    @model_validator(mode="after")
    def _default_models_fit_their_task(self) -> PipelineConfig:
        check_default_models(self.default_models, "TALKSTACK_DEFAULT_MODELS")
        return self

    def default_model(self, task: TaskKind) -> str:
        """What a request for `task` that names no model runs on."""
        return self.default_models.get(task, DEFAULT_MODELS[task])

    def upload_quota_bytes(self, tier: str) -> int:
        """The upload quota of an API key tier (free, pro, enterprise)."""
        return int(getattr(self, f"upload_quota_{tier}_bytes"))

    def backend_for(self, model_id: str) -> BackendName:
        return self.model_backends.get(model_id, self.worker_backend)

    @property
    def allowed_read_buckets(self) -> frozenset[str]:
        return frozenset([self.input_bucket, *self.readable_buckets])

    @property
    def allowed_write_buckets(self) -> frozenset[str]:
        return frozenset([self.output_bucket, *self.writable_buckets])

    @property
    def audit_export_bucket(self) -> str:
        return self.audit_bucket or self.output_bucket


@lru_cache(maxsize=1)
def get_config() -> PipelineConfig:
    """The configuration, parsed once per process (a Lambda container, or the local runtime)."""
    return PipelineConfig()  # type: ignore[call-arg]
