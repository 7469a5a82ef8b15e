"""What the REST API does, free of HTTP: submit, read, list and cancel jobs; uploads; models; usage.

A submission is checked here, synchronously, with the validate step's own functions (so an API
client gets its 4xx at once, with the same message an S3 drop would get in its job record); the
record is created under the key's concurrency limit and the execution started with the resolved
request. The state machine's Validate step finds the record already there and goes on.
"""

from __future__ import annotations

import base64
import binascii
import json
import secrets
import time
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from aws_lambda_powertools.utilities.idempotency import (
    DynamoDBPersistenceLayer,
    IdempotencyConfig,
    idempotent_function,
)
from aws_lambda_powertools.utilities.idempotency.exceptions import (
    IdempotencyAlreadyInProgressError,
    IdempotencyValidationError,
)

from talkstack import __version__
from talkstack.api.keys import Principal
from talkstack.api.limits import Admission
from talkstack.api.models import (
    AuditTrail,
    Health,
    JobAccepted,
    JobLinks,
    JobList,
    JobSummary,
    JobView,
    ModelLimits,
    ModelList,
    ModelView,
    OutputView,
    ResultView,
    TemplateList,
    TemplateView,
    Usage,
    UsageBucket,
)
from talkstack.api.templates import TemplateInstances, TemplateStore, parse_generate
from talkstack.api.uploads import PendingFile, Uploads
from talkstack.contract.composition import CompositionRequest
from talkstack.contract.fields import MAX_AVATAR_SECONDS
from talkstack.contract.parse import is_multitalk_v0_manifest, parse_job_request, with_default_models
from talkstack.contract.record import JOB_STATUSES, JobRecord, JobSource, utc_now
from talkstack.contract.request import AvatarRequest, JobRequestBase, OutputSpec
from talkstack.contract.state import execution_input, execution_json, execution_request
from talkstack.engines.registry import list_models
from talkstack.errors import ErrorCode, TalkstackError
from talkstack.pipeline.aio_s3 import AsyncS3
from talkstack.pipeline.audit import (
    AUDIT_ACTIONS,
    AuditLog,
    decode_audit_cursor,
    encode_audit_cursor,
)
from talkstack.pipeline.bundled_assets import BundledAssets
from talkstack.pipeline.cancel import cancel_job
from talkstack.pipeline.cost import gpu_seconds
from talkstack.pipeline.deletion import DataErasure, Deleter, JobDeletion
from talkstack.pipeline.store import iso_key
from talkstack.pipeline.tenancy import Namespace
from talkstack.pipeline.validate import (
    _check_model,
    audit_consent,
    check_consent_for,
    check_media,
    check_request,
)
from talkstack.settings import MediaLimits, get_limits
from talkstack.settings.retention import ttl_seconds

IDEMPOTENCY_TTL_S = 24 * 3600
DOWNLOAD_URL_S = 3600
MAX_PAGE = 100
IDEMPOTENCY_PK = "IDEMPOTENCY#"
"""Each API key's idempotency records live in a partition of their own: `IDEMPOTENCY#<key id>`."""
REPLAYED = "__idempotent_replay__"
ERASE_BUDGET_S = 20.0
"""How long one `DELETE /v1/data` call works before it answers (API Gateway gives up at 29 s): a
key with more jobs than that is erased over several calls, each going on where the last stopped."""


def links(job_id: str) -> JobLinks:
    return JobLinks(self=f"/v1/jobs/{job_id}", cancel=f"/v1/jobs/{job_id}/cancel")


def encode_cursor(key: Mapping[str, Any] | None) -> str | None:
    return base64.urlsafe_b64encode(json.dumps(key).encode()).decode() if key else None


CURSOR_ATTRIBUTES = frozenset({"pk", "sk", "owner", "created_at"})
"""A start key of the owner index: the table's key and the index's, each a DynamoDB string."""


def decode_cursor(cursor: str | None, owner: str) -> dict[str, Any] | None:
    """A `next_cursor` back into a start key; refused unless it names this key as its owner and has
    exactly a start key's shape (anything else would reach DynamoDB and come back as a 500)."""
    if not cursor:
        return None
    try:
        key = json.loads(base64.urlsafe_b64decode(cursor.encode()))
        if (
            not isinstance(key, dict)
            or set(key) != CURSOR_ATTRIBUTES
            or key["owner"] != {"S": owner}
            or any(
                not isinstance(v, dict) or set(v) != {"S"} or not isinstance(v["S"], str)
                for v in key.values()
            )
        ):
            raise ValueError("not this key's cursor")
        return key
    except (ValueError, binascii.Error, UnicodeDecodeError) as exc:
        raise TalkstackError(
            ErrorCode.INVALID_REQUEST, "cursor: not a cursor from a previous page of this list"
        ) from exc


def _mark_replay(response: Any, _record: Any) -> Any:
    return {**response, REPLAYED: True} if isinstance(response, dict) else response


class ApiService:
    def __init__(
        self,
        services: Any,
        ddb: Any,
        backends: Any,
        limits: MediaLimits | None = None,
        aio_s3: AsyncS3 | None = None,
    ) -> None:
        """`aio_s3` opens the async S3 client bundled template media are uploaded on (the API
        Lambda's: aioboto3); without one, `services.s3` over threads."""
        self.svc, self.ddb, self.backends = services, ddb, backends
        self.config = services.config
        self.limits = limits or get_limits()
        table = self.config.jobs_table
        self.uploads = Uploads(
            table,
            ddb,
            services.s3,
            self.config.input_bucket,
            self.limits,
            presign=services.presign,
            quota_bytes=self.config.upload_quota_bytes,
            ttl_s=ttl_seconds(self.config.upload_retention_days),
        )
        self.admission = Admission(table, ddb, services.store)
        self.templates = TemplateStore(services.s3, self.config.input_bucket)
        self.instances = TemplateInstances(
            services.s3,
            self.uploads,
            BundledAssets(services.s3, self.config.input_bucket, aio_s3),
            self.config,
        )
        self.audit = AuditLog(table, ddb, self.config.audit_retention_days)
        self.idempotency = IdempotencyConfig(
            event_key_jmespath="[owner, key]",
            payload_validation_jmespath="[task, body]",
            raise_on_no_idempotency_key=True,
            expires_after_seconds=IDEMPOTENCY_TTL_S,
            hash_function="sha256",
            response_hook=_mark_replay,
        )

    def _idempotent_submit(self, key_id: str) -> Any:
        """`_submit_ticket` made idempotent in the key's own partition. powertools writes every record
        of one persistence layer under its `static_pk_value`, so each key gets a layer of its own
        (cheap: no I/O until a call): one tenant's records never share a partition (its throughput,
        its item collection) with another's."""
        persistence = DynamoDBPersistenceLayer(
            table_name=self.config.jobs_table,
            key_attr="pk",
            sort_key_attr="sk",
            static_pk_value=f"{IDEMPOTENCY_PK}{key_id}",
            expiry_attr="expires_at",  # the table's TTL attribute: replays vanish after 24 h
            boto3_client=self.ddb,
        )
        return idempotent_function(
            data_keyword_argument="ticket", persistence_store=persistence, config=self.idempotency
        )(self._submit_ticket)

    # --- submit --------------------------------------------------------------------------------------

    def submit(
        self,
        principal: Principal,
        task: str,
        body: Any,
        idempotency_key: str | None,
        files: Sequence[PendingFile] = (),
    ) -> tuple[JobAccepted, bool]:
        """(accepted job, whether it is a replay of an earlier request with the same Idempotency-Key).
        `files`: a multipart request's media, named in `body` by upload id, stored only if the
        request passes its checks and is not a replay."""
        # Only [owner, key] name the request and only [task, body] must match on a replay; the tier
        # and name ride along so the idempotent function gets plain data only.
        ticket = {
            "owner": principal.key_id,
            "key": idempotency_key,
            "task": task,
            "body": body,
            "tier": principal.tier,
            "name": principal.name,
            "source_ip": principal.source_ip,
            "request_id": principal.request_id,
        }
        if idempotency_key is None:
            return JobAccepted.model_validate(self._submit_ticket(ticket=ticket, files=files)), False
        if not 1 <= len(idempotency_key) <= 255 or not idempotency_key.isprintable():
            raise TalkstackError(
                ErrorCode.INVALID_REQUEST, "Idempotency-Key: 1-255 printable characters (a UUID is typical)"
            )
        try:
            answer = dict(self._idempotent_submit(principal.key_id)(ticket=ticket, files=files))
        except IdempotencyValidationError as exc:
            raise TalkstackError(
                ErrorCode.IDEMPOTENCY_KEY_REUSED,
                "Idempotency-Key was already used with a different request body in the last 24 hours",
            ) from exc
        except IdempotencyAlreadyInProgressError as exc:
            raise TalkstackError(
                ErrorCode.CONFLICT,
                "a request with this Idempotency-Key is still being processed; retry in a moment",
                retry_after_s=1,
            ) from exc
        replayed = bool(answer.pop(REPLAYED, False))
        return JobAccepted.model_validate(answer), replayed

    def _submit_ticket(self, ticket: dict[str, Any], files: Sequence[PendingFile] = ()) -> dict[str, Any]:
        principal = Principal(
            ticket["owner"], ticket["tier"], ticket["name"], ticket["source_ip"], ticket["request_id"]
        )
        task, body = ticket["task"], ticket["body"]
        raw = self._request_body(task, body)
        request = with_default_models(parse_job_request(raw), self.config.default_models)
        check_request(request, self.config, self.limits)  # models, text, webhook: no I/O
        # The key's namespace decides what the job may read and where it publishes (no I/O either):
        # the outputs go under the key's folder, and anything it may not read is "not found"
        # before any HeadObject.
        namespace = Namespace.for_key(principal.key_id, self.config)
        job_id = f"{task}-{secrets.token_hex(8)}"
        request = namespace.place_output(request, job_id)
        for file in files:  # a bad request stored nothing; a replay never gets here
            # Logged before the bytes are stored (fail closed), as POST /v1/uploads is.
            self.audit.record(
                principal.actor, "upload.created", "upload", file.upload_id, content_type=file.content_type
            )
            self.uploads.store(principal, file)
        sent = {path: str(ref) for path, ref in request.referenced_media().items()}
        request = self.uploads.resolve(principal, request)
        sizes = check_media(request, namespace, self.svc.s3, self.limits, sent)
        check_consent_for(request, sizes, self.svc.s3, self.config, self.limits)
        carried = execution_request(request)  # what StartExecution takes, checked before admission
        record = JobRecord.new(job_id, request)  # type: ignore[arg-type]
        record.source = JobSource(kind="api", api_key_id=principal.key_id)
        # A parallel long avatar may render several chunks at once, a composition several scenes:
        # it gets the GPU task slots its key's tier has left (its Map's concurrency), at most one a
        # chunk or scene; any other job holds one.
        parallel, most = False, self.config.parallel_max_concurrency
        if isinstance(request, AvatarRequest):
            parallel = request.options.long_audio == "parallel"
        elif isinstance(request, CompositionRequest):
            engines = sum(1 for index in range(len(request.scenes)) if request.scene_steps(index))
            parallel, most = True, min(most, max(1, engines))
        self.admission.admit(principal, record, parallel=parallel, most=most, gpu=not is_preview(request))
        payload = execution_input(carried, record.source)
        try:
            # Logged before the execution starts (fail closed): no job runs without its entry.
            self.audit.record(principal.actor, "job.submitted", "job", job_id, task=task, model=record.model)
            audit_consent(self.audit, principal.actor, job_id, request)
        except TalkstackError as exc:
            unlogged = exc  # (the `as` name is gone once the block ends; the update runs inside it)
            self.svc.store.update(job_id, lambda r: r.is_terminal or r.mark_failed(unlogged, step="validate"))
            raise
        try:
            self.svc.sfn.start_execution(
                stateMachineArn=self.config.state_machine_arn,
                name=job_id,
                input=execution_json(payload),
            )
        except Exception as exc:
            error = TalkstackError(ErrorCode.GENERATION_FAILED, f"the job could not be started: {exc}")
            self.svc.store.update(job_id, lambda r: r.is_terminal or r.mark_failed(error, step="validate"))
            raise error from exc
        self.svc.emit(record, "job.queued")
        accepted = JobAccepted(
            job_id=job_id,
            task=request.task,
            status=record.status,
            created_at=record.created_at,
            links=links(job_id),
        )
        return accepted.model_dump(mode="json")

    @staticmethod
    def _request_body(task: str, body: Any) -> dict[str, Any]:
        if not isinstance(body, dict):
            raise TalkstackError(ErrorCode.INVALID_REQUEST, "request: expected a JSON object")
        if "job_id" in body:
            raise TalkstackError(
                ErrorCode.INVALID_REQUEST,
                "job_id: the API chooses job ids; send an Idempotency-Key header to make retries safe",
            )
        if task == "avatar" and is_multitalk_v0_manifest(body):
            return body  # a MultiTalk API v0 manifest (always an avatar): the parser converts it
        if body.get("task", task) != task:
            raise TalkstackError(
                ErrorCode.INVALID_REQUEST, f"task: this endpoint makes {task} jobs, not {body['task']!r}"
            )
        return {**body, "task": task}

    # --- templates ----------------------------------------------------------------------------------

    def list_templates(self, principal: Principal) -> TemplateList:
        return self.templates.list(principal.key_id)

    def get_template(self, principal: Principal, template_id: str) -> TemplateView:
        return self.templates.view(*self.templates.get(principal.key_id, template_id))

    def put_template(self, principal: Principal, template_id: str, body: Any) -> tuple[TemplateView, bool]:
        document, created = self.templates.put(principal.key_id, template_id, body)
        return self.templates.view(document, "own"), created

    def delete_template(self, principal: Principal, template_id: str) -> None:
        self.templates.delete(principal.key_id, template_id)

    def generate_from_template(
        self, principal: Principal, template_id: str, body: Any, idempotency_key: str | None
    ) -> tuple[JobAccepted, bool]:
        """Instantiate the template with the body's variables and submit the composition exactly as
        a generation request (same checks, limits and idempotency)."""
        request = parse_generate(body)
        document, _ = self.templates.get(principal.key_id, template_id)
        composition = self.instances.composition(principal, document, request)
        return self.submit(principal, "composition", composition, idempotency_key)

    def render_job(
        self, principal: Principal, job_id: str, idempotency_key: str | None
    ) -> tuple[JobAccepted, bool]:
        """The full render of a preview: a new job with the preview's request, `preview` off."""
        record = self.owned(principal, job_id)
        request = record.request
        if not isinstance(request, CompositionRequest) or not request.preview:
            raise TalkstackError(
                ErrorCode.CONFLICT,
                f"job {job_id!r} is not a composition preview; only a job submitted with preview: true "
                "can be rendered in full",
            )
        if record.status == "failed":
            raise TalkstackError(
                ErrorCode.CONFLICT,
                f"job {job_id!r} failed; fix what its error names and submit the composition again",
            )
        body = json.loads(request.model_dump_json(exclude_none=True))
        body.pop("job_id", None)
        body["preview"] = False
        body["output"] = self._output_again(principal, request, job_id)
        return self.submit(principal, "composition", body, idempotency_key)

    def _output_again(self, principal: Principal, request: JobRequestBase, job_id: str) -> dict[str, Any]:
        """The `output` the preview was submitted with, recovered from where it was placed (under the
        key's folder, the job id appended): the full render goes beside it, in its own job folder."""
        spec = request.output
        namespace = Namespace.for_key(principal.key_id, self.config)
        bucket, root = namespace.output_root(spec.bucket)
        relative = (spec.prefix or "").removeprefix(root)
        if relative == job_id:
            prefix = None
        elif relative.endswith(f"/{job_id}"):
            prefix = relative.removesuffix(f"/{job_id}")
        else:
            prefix = relative or None
        again = OutputSpec(
            bucket=None if bucket == self.config.output_bucket else bucket,
            prefix=prefix,
            filename=spec.filename,
            unique_suffix=prefix is not None,
        )
        return json.loads(again.model_dump_json(exclude_none=True))

    # --- read ----------------------------------------------------------------------------------------

    def owned(self, principal: Principal, job_id: str) -> JobRecord:
        """The key's job, or NOT_FOUND (another key's job is indistinguishable from no job)."""
        record = self.svc.store.get(job_id) if len(job_id) <= 80 else None
        if record is None or record.source is None or record.source.api_key_id != principal.key_id:
            raise TalkstackError(ErrorCode.NOT_FOUND, f"no job {job_id!r} for this API key")
        return record

    def view(self, record: JobRecord) -> JobView:
        result = None
        if record.result is not None and record.status == "completed":
            expires = utc_now() + timedelta(seconds=DOWNLOAD_URL_S)
            outputs = [
                OutputView(
                    kind=o.kind,
                    content_type=o.content_type,
                    bytes=o.bytes,
                    bucket=o.bucket,
                    key=o.key,
                    url=self.svc.presign.generate_presigned_url(
                        "get_object", Params={"Bucket": o.bucket, "Key": o.key}, ExpiresIn=DOWNLOAD_URL_S
                    ),
                    url_expires_at=expires,
                )
                for o in record.result.outputs
            ]
            result = ResultView.model_validate(
                {**record.result.model_dump(exclude={"outputs", "held"}), "outputs": outputs}
            )
        return JobView.of(record, result, links(record.job_id))

    def get_job(self, principal: Principal, job_id: str) -> JobView:
        view = self.view(self.owned(principal, job_id))
        if view.result is not None and view.result.outputs:
            # Logged before the URLs leave (fail closed): every hand-out of download links is on record.
            self.audit.record(
                principal.actor,
                "output.url_issued",
                "job",
                job_id,
                outputs=[o.kind for o in view.result.outputs],
                expires_at=view.result.outputs[0].url_expires_at,
            )
        return view

    def list_jobs(self, principal: Principal, status: str | None, limit: int, cursor: str | None) -> JobList:
        statuses = frozenset(s.strip() for s in status.split(",") if s.strip()) if status else None
        unknown = (statuses or frozenset()) - set(JOB_STATUSES)
        if unknown:
            raise TalkstackError(
                ErrorCode.INVALID_REQUEST,
                f"status: unknown {', '.join(sorted(unknown))} (one or more of {', '.join(JOB_STATUSES)})",
            )
        records, next_key = self.svc.store.list_owned(
            principal.key_id,
            statuses=statuses,
            limit=max(1, min(limit, MAX_PAGE)),
            cursor=decode_cursor(cursor, principal.key_id),
        )
        jobs = [
            JobSummary(
                job_id=r.job_id,
                task=r.task,
                model=r.model,
                status=r.status,
                progress=r.progress,
                created_at=r.created_at,
                finished_at=r.finished_at,
                error_code=r.error.code if r.error else None,
            )
            for r in records
        ]
        return JobList(jobs=jobs, next_cursor=encode_cursor(next_key))

    # --- cancel --------------------------------------------------------------------------------------

    def cancel(self, principal: Principal, job_id: str) -> JobView:
        record, cancelled_now = cancel_job(
            job_id,
            self.config,
            self.svc.store,
            self.svc.s3,
            self.svc.sfn,
            self.backends,
            self.svc.emit,
            current=self.owned(principal, job_id),
        )
        if cancelled_now:
            # After the fact: an entry must not claim a cancel that was refused (409). If this write
            # fails the caller gets a 500 and the job stays cancelled (the entry is in the error log).
            self.audit.record(principal.actor, "job.cancelled", "job", job_id)
        return self.view(record)

    # --- deletion ------------------------------------------------------------------------------------

    @property
    def deleter(self) -> Deleter:
        return Deleter(self.config, self.svc.store, self.svc.s3, self.svc.sfn, self.backends, self.audit)

    def delete_job(self, principal: Principal, job_id: str) -> JobDeletion:
        """Everything of the key's job but its audit entries (talkstack.pipeline.deletion)."""
        return self.deleter.delete_job(self.owned(principal, job_id), principal.actor)

    def erase_data(self, principal: Principal) -> DataErasure:
        """Everything of the caller's key, the key itself last (talkstack.pipeline.deletion), within
        ERASE_BUDGET_S; `complete: false` asks the caller to call again."""
        return self.deleter.erase_key(
            principal.key_id, principal.actor, deadline=time.monotonic() + ERASE_BUDGET_S
        )

    # --- audit trail ---------------------------------------------------------------------------------

    def audit_trail(
        self,
        principal: Principal,
        action: str | None,
        start: datetime | None,
        end: datetime | None,
        order: Literal["newest", "oldest"],
        limit: int,
        cursor: str | None,
    ) -> AuditTrail:
        """The caller's own entries only: the query's partition is the caller's key id, and a cursor
        from another key's trail is refused."""
        actions = frozenset(a.strip() for a in action.split(",") if a.strip()) if action else None
        unknown = (actions or frozenset()) - set(AUDIT_ACTIONS)
        if unknown:
            raise TalkstackError(
                ErrorCode.INVALID_REQUEST,
                f"action: unknown {', '.join(sorted(unknown))} (one or more of {', '.join(AUDIT_ACTIONS)})",
            )
        if start is not None and end is not None and start >= end:
            raise TalkstackError(ErrorCode.INVALID_REQUEST, "start: must be before end")
        entries, next_key = self.audit.trail(
            principal.key_id,
            actions=actions,
            start=start,
            end=end,
            limit=max(1, min(limit, MAX_PAGE)),
            newest_first=order == "newest",
            cursor=decode_audit_cursor(cursor, principal.key_id),
        )
        return AuditTrail(entries=entries, next_cursor=encode_audit_cursor(next_key))

    # --- models, usage -------------------------------------------------------------------------------

    def models(self) -> ModelList:
        views = []
        for info in list_models():
            reason = None
            try:
                _check_model(info.id, info.task, self.config, "model")
            except TalkstackError as exc:
                reason = exc.message.removeprefix("model: ")
            views.append(
                ModelView(
                    id=info.id,
                    task=info.task,
                    description=info.description,
                    licence=info.licence,
                    gpu=info.gpu,
                    backend=info.backend,
                    default=self.config.default_model(info.task) == info.id,
                    available=reason is None,
                    unavailable_reason=reason,
                    limits=self._model_limits(info.task),
                )
            )
        return ModelList(models=views)

    def _model_limits(self, task: str) -> ModelLimits:
        lim = self.limits
        if task == "avatar":
            return ModelLimits(
                max_audio_seconds=min(lim.max_audio_seconds, MAX_AVATAR_SECONDS),
                max_text_chars=lim.max_text_chars,
                max_image_bytes=lim.max_image_bytes,
                max_audio_bytes=lim.max_audio_bytes,
            )
        if task == "voice":
            return ModelLimits(
                max_audio_seconds=lim.max_audio_seconds,
                max_text_chars=lim.max_text_chars,
                max_audio_bytes=lim.max_audio_bytes,
            )
        if task == "matte":  # cuts the person out of a composition's scene: the scene's limits apply
            return ModelLimits()
        return ModelLimits(max_image_bytes=lim.max_image_bytes, max_duration_s=60.0)

    def usage(
        self,
        principal: Principal,
        period: Literal["day", "month"],
        start: datetime | None,
        end: datetime | None,
    ) -> Usage:
        now = utc_now()
        end = (end or now).astimezone(UTC)
        if start is None:
            start = (
                end - timedelta(days=30) if period == "day" else _month_start(end).replace(year=end.year - 1)
            )
        start = start.astimezone(UTC)
        if start >= end:
            raise TalkstackError(ErrorCode.INVALID_REQUEST, "start: must be before end")
        if end - start > timedelta(days=400):
            raise TalkstackError(ErrorCode.INVALID_REQUEST, "start: at most 400 days before end")
        buckets: dict[datetime, UsageBucket] = {}
        cursor = None
        while True:
            records, cursor = self.svc.store.list_owned(
                principal.key_id, limit=MAX_PAGE, cursor=cursor, since=iso_key(start), until=iso_key(end)
            )
            for record in records:
                first = _day_start(record.created_at) if period == "day" else _month_start(record.created_at)
                bucket = buckets.get(first)
                if bucket is None:
                    bucket = buckets[first] = UsageBucket(start=first, end=_next(first, period))
                _count(bucket, record)
            if cursor is None:
                break
        totals = UsageBucket(start=start, end=end)
        for bucket in buckets.values():
            for field in ("jobs", "completed", "failed", "cancelled", "active", "previews"):
                setattr(totals, field, getattr(totals, field) + getattr(bucket, field))
            for field in ("seconds_rendered", "gpu_seconds", "estimated_cost_usd"):
                setattr(totals, field, round(getattr(totals, field) + getattr(bucket, field), 6))
        limits = principal.limits
        return Usage(
            period=period,
            start=start,
            end=end,
            tier=principal.tier,
            limits={
                "requests_per_minute": limits.requests_per_minute,
                "concurrent_jobs": limits.concurrent_jobs,
                "gpu_tasks": limits.gpu_tasks,
                "upload_bytes": self.config.upload_quota_bytes(principal.tier),
            },
            totals=totals,
            buckets=[buckets[k] for k in sorted(buckets)],
        )

    def health(self) -> Health:
        return Health(status="ok", version=__version__, time=utc_now())


def _day_start(moment: datetime) -> datetime:
    return moment.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)


def _month_start(moment: datetime) -> datetime:
    return _day_start(moment).replace(day=1)


def _next(first: datetime, period: str) -> datetime:
    if period == "day":
        return first + timedelta(days=1)
    return (first + timedelta(days=32)).replace(day=1)


def is_preview(request: JobRequestBase | None) -> bool:
    """A composition preview: lite engines only, no GPU task, no GPU time (docs/api.md, usage)."""
    return isinstance(request, CompositionRequest) and request.preview


def _count(bucket: UsageBucket, record: JobRecord) -> None:
    bucket.jobs += 1
    if is_preview(record.request):
        bucket.previews += 1
    if record.status in ("completed", "failed", "cancelled"):
        setattr(bucket, record.status, getattr(bucket, record.status) + 1)
    else:
        bucket.active += 1
    if record.result is not None:
        bucket.seconds_rendered = round(bucket.seconds_rendered + (record.result.duration_s or 0.0), 3)
        bucket.estimated_cost_usd = round(
            bucket.estimated_cost_usd + (record.result.estimated_cost_usd or 0.0), 6
        )
    if not is_preview(record.request):  # a preview runs lite engines on CPUs: never GPU time
        bucket.gpu_seconds = round(bucket.gpu_seconds + gpu_seconds(record), 3)
