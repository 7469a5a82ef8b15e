"""Least privilege, in one place: what each Lambda may do, statement by statement.

S3 access is written out action by action (no `s3:*`, no `s3:Get*`) and limited to the prefixes a
function works on. `s3:ListBucket` is granted where a handler must tell a missing object (404) from
a forbidden one (S3 answers 403 to a HEAD of a missing key without it), on the bucket and without
an `s3:prefix` condition: S3 documents the 404 for "s3:ListBucket permission on the bucket", not for
a prefix-conditioned one. Buckets named in the settings (readable/writable) get exactly the same
statements as the stack's own.

The tenant namespaces (talkstack/pipeline/tenancy.py) decide in code what each job may touch; IAM
has to allow the union of them:

- reads (api, validate, segment, dispatch): the readable buckets (operators' direct starts, and a
  drop's own folder in the input bucket), every key's own outputs (`tenants/` in the output
  bucket), and the read and write grants (TALKSTACK_READ_GRANTS / TALKSTACK_WRITE_GRANTS: a key
  reads back what it published there);
- publishing (finalize; fail and api's cancel take back): the writable buckets and the write
  grants. Publishing HEADs each target first (free, or this job's: outputs.claim), so these roles
  also read there, with ListBucket so that a free key is a 404, not a 403.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from aws_cdk import Aws
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_s3 as s3
from aws_cdk import aws_secretsmanager as secretsmanager
from aws_cdk import aws_sns as sns
from aws_cdk import aws_sqs as sqs

from talkstack.contract.worker import CONTROL_PREFIX as CONTROL
from talkstack.contract.worker import HELD_PREFIX
from talkstack.contract.worker import MARKERS_PREFIX as MARKERS
from talkstack.contract.worker import WORK_PREFIX as WORK
from talkstack.pipeline.audit import EXPORT_PREFIX as AUDIT_PREFIX
from talkstack.pipeline.bundled_assets import BUNDLED_PREFIX
from talkstack.pipeline.jobs_table import OWNER_INDEX
from talkstack.pipeline.tenancy import TEMPLATES_PREFIX, TENANTS_PREFIX
from talkstack_cdk.functions import PipelineFunctions
from talkstack_cdk.settings import DeploySettings
from talkstack_cdk.storage import INPUT_PREFIX, UPLOAD_PREFIX, Storage

READ = ("s3:GetObject",)  # also what HeadObject and a pre-signed GET need
WRITE = ("s3:PutObject",)  # also a pre-signed PUT, and each part of a multipart upload/copy
DELETE = ("s3:DeleteObject",)
LIST = ("s3:ListBucket",)
# Exactly what talkstack.pipeline.store, talkstack.api (keys, limits, uploads, idempotency) call.
TABLE_READ = ("dynamodb:GetItem", "dynamodb:BatchGetItem", "dynamodb:Query", "dynamodb:DescribeTable")
TABLE_WRITE = (
    "dynamodb:PutItem",
    "dynamodb:UpdateItem",
    "dynamodb:DeleteItem",
    "dynamodb:ConditionCheckItem",
)


@dataclass(frozen=True)
class Targets:
    """What the grants point at, besides storage."""

    state_machine_arn: str
    executions_arn: str
    topic: sns.ITopic
    key: kms.IKey
    ingest_refusals: sqs.IQueue
    modal_token: secretsmanager.ISecret
    webhook_secret: secretsmanager.ISecret
    c2pa_signer: secretsmanager.ISecret


Bucket = s3.IBucket | str
"""A bucket of the stack, or the name of one the settings allow."""
ObjectScopes = dict[str, set[tuple[Bucket, str]]]
"""Per role: the (bucket, key prefix) pairs it was granted object actions on."""


def _unique(pairs: Iterable[tuple[Bucket, str]]) -> list[tuple[Bucket, str]]:
    """Each (bucket, prefix) once, in order (a grant may repeat a location, or name a stack bucket)."""
    return list(dict.fromkeys(pairs))


def _bucket_arn(bucket: Bucket) -> str:
    return f"arn:{Aws.PARTITION}:s3:::{bucket}" if isinstance(bucket, str) else bucket.bucket_arn


def object_arn(bucket: Bucket, prefix: str) -> str:
    return f"{_bucket_arn(bucket)}/{prefix}*"


def allow(role: iam.IRole, sid: str, actions: Iterable[str], resources: Iterable[str]) -> None:
    role.add_to_principal_policy(
        iam.PolicyStatement(sid=sid, actions=list(actions), resources=list(resources))
    )


def grant_pipeline(
    functions: PipelineFunctions, storage: Storage, targets: Targets, settings: DeploySettings
) -> ObjectScopes:
    inputs, work, outputs = storage.data_buckets
    readable: list[Bucket] = [inputs, *settings.readable_buckets]
    writable: list[Bucket] = [outputs, *settings.writable_buckets]
    # Where a tenant (an API key, a drop folder) may read beyond the readable buckets, and where an
    # API key may publish beyond the writable ones, as (bucket, prefix) pairs.
    write_grants = _unique((g.bucket, g.prefix) for g in settings.write_grants)
    tenant_reads = _unique(
        [(outputs, TENANTS_PREFIX), *((g.bucket, g.prefix) for g in settings.read_grants), *write_grants]
    )
    publish_to = _unique([*((b, "") for b in writable), *write_grants])
    role = functions.roles
    scopes: ObjectScopes = {name: set() for name in functions.roles}

    def objects(name: str, buckets: Iterable[Bucket], prefixes: Iterable[str] = ("",)) -> list[str]:
        """Object ARNs `bucket/prefix*`, remembered per role for nag.py's acknowledgments."""
        return scoped(name, [(bucket, prefix) for bucket in buckets for prefix in prefixes])

    def scoped(name: str, pairs: Iterable[tuple[Bucket, str]]) -> list[str]:
        pairs = list(pairs)
        scopes[name].update(pairs)
        return [object_arn(bucket, prefix) for bucket, prefix in pairs]

    def buckets(pairs: Iterable[tuple[Bucket, str]]) -> list[str]:
        """The bucket ARNs (for s3:ListBucket) of (bucket, prefix) pairs, each once."""
        return list(dict.fromkeys(_bucket_arn(bucket) for bucket, _ in pairs))

    reads = [*((b, "") for b in readable), *tenant_reads]

    # Every pipeline function keeps job records; the authorizer only reads keys.
    table = storage.table.table_arn
    for name in functions.functions:
        if name == "authorizer":
            allow(role[name], "ReadKeys", ["dynamodb:GetItem"], [table])
            continue
        if name == "audit_export":
            allow(role[name], "ReadAuditDays", ["dynamodb:Query"], [table])
            continue
        allow(role[name], "JobRecords", [*TABLE_READ, *TABLE_WRITE], [table])
        allow(role[name], "JobsByOwner", ["dynamodb:Query"], [f"{table}/index/{OWNER_INDEX}"])
    # Handlers that announce job events hand them to notify asynchronously (unqualified name).
    for name in ("api", "ingest", "validate", "dispatch", "complete"):
        allow(role[name], "Announce", ["lambda:InvokeFunction"], [functions["notify"].function_arn])
    # Handlers that talk to Modal (spawn, cancel, check a model is deployed); fail cancels the calls
    # of a job that failed (pipeline/failure.py: a failed job stops its workers).
    for name in ("api", "validate", "moderate", "dispatch", "fail"):
        targets.modal_token.grant_read(functions[name])

    # ingest: read the dropped manifest, start (or find) the execution, park refusals.
    allow(role["ingest"], "ReadManifests", READ, objects("ingest", [inputs], [INPUT_PREFIX]))
    allow(role["ingest"], "StartJobs", ["states:StartExecution"], [targets.state_machine_arn])
    allow(role["ingest"], "FindJobs", ["states:DescribeExecution"], [targets.executions_arn])
    targets.ingest_refusals.grant_send_messages(functions["ingest"])

    # validate: HEAD every input wherever requests may read from (a missing one must be a 404:
    # INPUT_NOT_FOUND, the same answer as for what the namespace may not read).
    allow(role["validate"], "HeadInputs", READ, scoped("validate", reads))
    allow(role["validate"], "TellMissingInputs", LIST, buckets(reads))

    # segment: read the speech (an input, or the voice step's output), write the chunks.
    allow(
        role["segment"],
        "ReadSpeech",
        READ,
        [*scoped("segment", reads), *objects("segment", [work], [WORK])],
    )
    allow(role["segment"], "WriteChunks", WRITE, objects("segment", [work], [WORK]))

    # dispatch: pre-sign GETs of inputs and earlier outputs, PUTs of this attempt's outputs and
    # markers, and the GET of the cancel flag. The worker gets URLs, never these permissions.
    allow(
        role["dispatch"],
        "PresignReads",
        READ,
        [*scoped("dispatch", reads), *objects("dispatch", [work], [WORK, CONTROL])],
    )
    allow(role["dispatch"], "PresignWrites", WRITE, objects("dispatch", [work], [WORK, MARKERS]))

    # complete: read markers, check the outputs they list, answer the waiting task.
    allow(role["complete"], "ReadMarkers", READ, objects("complete", [work], [MARKERS, WORK]))
    allow(role["complete"], "TellMissingOutputs", LIST, [work.bucket_arn])
    allow(
        role["complete"],
        "AnswerTasks",
        ["states:SendTaskSuccess", "states:SendTaskFailure", "states:SendTaskHeartbeat"],
        [targets.state_machine_arn],
    )

    # finalize: HEAD each target (free: a 404, or this job's), copy work outputs there under a
    # write condition, and remove them again if the job was cancelled meanwhile.
    allow(role["finalize"], "ReadWork", READ, objects("finalize", [work], [WORK]))
    # ... and writes the signed copy of each video and audio beside the worker's (pipeline/provenance.py)
    # with the operator's C2PA signer.
    allow(role["finalize"], "WriteSignedOutputs", WRITE, objects("finalize", [work], [WORK]))
    targets.c2pa_signer.grant_read(functions["finalize"])
    allow(role["finalize"], "CheckTargets", READ, scoped("finalize", publish_to))
    allow(role["finalize"], "TellFreeTargets", LIST, buckets(publish_to))
    allow(role["finalize"], "Publish", [*WRITE, *DELETE], scoped("finalize", publish_to))
    # ... or, when the output scan flagged them, hold them in the work bucket for an operator's
    # review instead (and take them back if the job was cancelled meanwhile).
    allow(
        role["finalize"], "HoldOutputs", [*READ, *WRITE, *DELETE], objects("finalize", [work], [HELD_PREFIX])
    )

    # fail: no partial output stays published.
    allow(role["fail"], "FindPartialOutputs", READ, scoped("fail", publish_to))
    allow(role["fail"], "TellMissingOutputs", LIST, buckets(publish_to))
    allow(role["fail"], "RemovePartialOutputs", DELETE, scoped("fail", publish_to))
    # ... and stops a failed job's workers: the cancel flag every worker polls (as the API's cancel).
    allow(role["fail"], "CancelFlags", WRITE, objects("fail", [work], [CONTROL]))

    # notify: the topic (and its KMS key: SNS encrypts each message with a data key), and the
    # webhook signing secret.
    allow(role["notify"], "PublishEvents", ["sns:Publish"], [targets.topic.topic_arn])
    allow(role["notify"], "EncryptEvents", ["kms:GenerateDataKey", "kms:Decrypt"], [targets.key.key_arn])
    targets.webhook_secret.grant_read(functions["notify"])

    # audit_export: write the day's JSON Lines file, and nothing else anywhere.
    allow(
        role["audit_export"],
        "WriteAuditExports",
        WRITE,
        objects("audit_export", [storage.audit_bucket], [AUDIT_PREFIX]),
    )

    # api: uploads, HEADs of inputs, results' pre-signed GETs, jobs started, stopped and cancelled
    # (a cancel takes back what finalize published: a HEAD of each key, most of them missing).
    allow(role["api"], "Uploads", WRITE, objects("api", [inputs], [UPLOAD_PREFIX]))
    # api: each key's own templates (templates/<key id>/<id>.json: written, read through HeadInputs'
    # whole-bucket read, deleted) and the bundled template media it copies in once (assets/bundled/).
    allow(role["api"], "Templates", [*WRITE, *DELETE], objects("api", [inputs], [TEMPLATES_PREFIX]))
    allow(role["api"], "BundledAssets", WRITE, objects("api", [inputs], [BUNDLED_PREFIX]))
    allow(role["api"], "HeadInputs", READ, scoped("api", reads))
    allow(role["api"], "TellMissingInputs", LIST, buckets(reads))
    allow(role["api"], "PresignResults", [*READ, *DELETE], scoped("api", publish_to))
    allow(role["api"], "TellMissingOutputs", LIST, buckets(publish_to))
    allow(role["api"], "CancelFlags", WRITE, objects("api", [work], [CONTROL]))
    allow(role["api"], "StartJobs", ["states:StartExecution"], [targets.state_machine_arn])
    # api: deletion on request (talkstack/pipeline/deletion.py): a job's uploads, its work files and
    # held outputs (its published outputs: PresignResults above), found by listing their prefixes.
    allow(role["api"], "DeleteUploads", DELETE, objects("api", [inputs], [UPLOAD_PREFIX]))
    allow(role["api"], "DeleteWork", DELETE, objects("api", [work], [WORK, MARKERS, CONTROL, HELD_PREFIX]))
    allow(role["api"], "ListForDeletion", LIST, buckets([(inputs, UPLOAD_PREFIX), (work, "")]))
    allow(
        role["api"],
        "StopJobs",
        ["states:StopExecution", "states:DescribeExecution"],
        [targets.executions_arn],
    )
    return scopes
