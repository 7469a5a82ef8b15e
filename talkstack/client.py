"""Python client for the talkstack REST API (`talkstack up` serves it locally; API Gateway in AWS).

    import os

    from talkstack.client import TalkstackClient

    # `talkstack up` serves the API at this URL; `talkstack keys create` prints a key.
    with TalkstackClient("http://127.0.0.1:4577", os.environ["TALKSTACK_API_KEY"]) as api:
        image = api.upload("talkstack/assets/samples/portrait.png")
        audio = api.upload("talkstack/assets/samples/speech.wav")
        accepted = api.generate_avatar({"inputs": {"image": image, "audio": audio}})
        job = api.wait(accepted.job_id, on_progress=lambda j: print(f"{j.status} {j.progress:.0%}"))
        for path in api.download(job, "out/python"):  # refuses a job that did not complete
            print(path)

Every method returns the API's own pydantic models (talkstack.api.models). Every non-2xx answer
raises `ApiError` (a `TalkstackError`) with the HTTP status and the API's error code, message and
details; an API that cannot be reached at all raises `ApiConnectionError`.

Retries (tenacity): 429, 5xx and transport errors are retried up to `max_retries` times, waiting
the answer's `Retry-After` when it has one and exponential backoff with jitter otherwise. Other
4xx answers are never retried. A generation POST is retried only because it always carries an
`Idempotency-Key`: the caller's, or a fresh uuid4 made once per call and sent unchanged on every
retry, so a retry whose first attempt did reach the server returns the original job instead of
starting a second one. Pre-signed storage URLs (upload PUT, output GET) are requested without the
API key, which must never leave for the storage host.
"""

from __future__ import annotations

import email.utils
import json
import logging
import mimetypes
import re
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from typing import Any, TypeVar
from urllib.parse import quote

import httpx
from pydantic import BaseModel
from tenacity import (
    RetryCallState,
    Retrying,
    retry_if_exception,
    stop_after_attempt,
    wait_exponential,
    wait_random,
)
from tenacity.wait import wait_base

from talkstack import __version__
from talkstack.api.models import (
    AuditTrail,
    AvatarGenerate,
    CompositionGenerate,
    DataErasure,
    Health,
    JobAccepted,
    JobDeletion,
    JobList,
    JobSummary,
    JobView,
    ModelList,
    TemplateGenerate,
    TemplateList,
    TemplateView,
    UploadTicket,
    Usage,
    VideoGenerate,
    VoiceGenerate,
    WebhookCreated,
    WebhookList,
    WebhookSecret,
    WebhookView,
)
from talkstack.errors import ErrorCode, TalkstackError

__all__ = [
    "ApiConnectionError",
    "ApiError",
    "JobWaitTimeout",
    "TalkstackClient",
    "wait_retry_after",
]

log = logging.getLogger(__name__)
M = TypeVar("M", bound=BaseModel)
T = TypeVar("T")

TERMINAL_STATUSES = frozenset({"completed", "failed", "cancelled"})
MAX_RETRY_AFTER_S = 120.0
"""A longer Retry-After is capped to this (a retry then may be refused again, and counts as one)."""
CHUNK_BYTES = 1 << 20
FINISHING_RETRIES = 5
"""How often delete_job waits out a 409 for a job whose execution is still finishing."""

_MIME = mimetypes.MimeTypes()
for _type, _ext in (
    ("image/png", ".png"),
    ("image/jpeg", ".jpg"),
    ("image/jpeg", ".jpeg"),
    ("image/webp", ".webp"),
    ("audio/wav", ".wav"),
    ("audio/mpeg", ".mp3"),
    ("audio/mp4", ".m4a"),
    ("audio/flac", ".flac"),
    ("audio/ogg", ".ogg"),
    ("video/mp4", ".mp4"),
):
    _MIME.add_type(_type, _ext)  # the media the engines read, named as the API lists them, on any OS

# What a status means when the body carries no code of ours (a gateway's or a storage host's answer).
_STATUS_CODES = {
    400: ErrorCode.INVALID_REQUEST,
    401: ErrorCode.UNAUTHORIZED,
    403: ErrorCode.INPUT_FORBIDDEN,
    404: ErrorCode.NOT_FOUND,
    409: ErrorCode.CONFLICT,
    413: ErrorCode.INPUT_TOO_LARGE,
    415: ErrorCode.UNSUPPORTED_MEDIA,
    429: ErrorCode.RATE_LIMITED,
}


# --- errors -------------------------------------------------------------------------------------------


class ApiError(TalkstackError):
    """A non-2xx answer: HTTP `status`, the API's `code`, `message` and `details`, and `retry_after`
    (seconds, from the Retry-After header) when the server said when to come back."""

    def __init__(
        self,
        status: int,
        code: ErrorCode,
        message: str,
        details: dict[str, Any] | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(code, message)
        self.details = dict(details or {})  # set directly: the server's keys may be any names
        self.status = status
        self.retry_after = retry_after

    @property
    def retryable(self) -> bool:
        return self.status == 429 or self.status >= 500

    @classmethod
    def from_response(cls, response: httpx.Response) -> ApiError:
        """Parse `{"error": {"code", "message", "details"}}`; anything else (a gateway's
        `{"message": …}`, S3's XML, HTML, nothing) still gives a code from the status and a message."""
        status = response.status_code
        fallback = _STATUS_CODES.get(status, ErrorCode.GENERATION_FAILED if status >= 500 else None)
        code = fallback or ErrorCode.INVALID_REQUEST
        message, details = "", {}
        text = _body_text(response)
        try:
            body = json.loads(text) if text else None
        except ValueError:
            body = None
        error = body.get("error") if isinstance(body, dict) else None
        if isinstance(error, dict):
            raw_code = error.get("code")
            try:
                code = ErrorCode(raw_code)
            except (ValueError, TypeError):
                details["server_code"] = raw_code  # a code this client does not know yet
            message = str(error.get("message") or "")
            if isinstance(error.get("details"), dict):
                details.update(error["details"])
        elif isinstance(body, dict) and isinstance(body.get("message"), str):
            message = body["message"]  # API Gateway's own answers
        elif text:
            xml = re.search(r"<Code>(.*?)</Code>.*?<Message>(.*?)</Message>", text, re.S)
            message = f"{xml[1]}: {xml[2]}" if xml else " ".join(text.split())[:300]
        if not isinstance(error, dict):  # not the API's own answer: say who answered
            where = f"HTTP {status} from {response.request.url.host}"
            message = f"{where}: {message}" if message else f"{where} ({response.reason_phrase or 'error'})"
        return cls(status, code, message, details, _retry_after(response.headers.get("Retry-After")))


class ApiConnectionError(TalkstackError):
    """The API (or a storage URL) could not be reached, even after retrying."""


class JobWaitTimeout(TalkstackError, TimeoutError):
    """`wait()` gave up; the job itself goes on (`details["job"]` is its last view)."""


def _body_text(response: httpx.Response) -> str:
    try:
        response.read()
        return response.text
    except (httpx.HTTPError, UnicodeDecodeError):
        return ""


def _retry_after(value: str | None) -> float | None:
    """Retry-After as seconds: delta-seconds or an HTTP date."""
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - datetime.now(UTC)).total_seconds())


# --- retry policy -------------------------------------------------------------------------------------


def _retryable(exc: BaseException) -> bool:
    return isinstance(exc, httpx.TransportError) or (isinstance(exc, ApiError) and exc.retryable)


class wait_retry_after(wait_base):
    """Wait what the failed answer's Retry-After said (capped at `cap`); else ask `fallback`."""

    def __init__(self, fallback: wait_base, cap: float = MAX_RETRY_AFTER_S) -> None:
        self.fallback, self.cap = fallback, cap

    def __call__(self, retry_state: RetryCallState) -> float:
        outcome = retry_state.outcome
        exc = outcome.exception() if outcome is not None and outcome.failed else None
        if isinstance(exc, ApiError) and exc.retry_after is not None:
            return min(exc.retry_after, self.cap)
        return self.fallback(retry_state)


def _log_retry(retry_state: RetryCallState) -> None:
    outcome = retry_state.outcome
    exc = outcome.exception() if outcome is not None else None
    sleep = retry_state.next_action.sleep if retry_state.next_action else 0.0
    log.warning("retrying in %.1f s after attempt %d: %s", sleep, retry_state.attempt_number, exc)


# --- the client ---------------------------------------------------------------------------------------


class TalkstackClient:
    """A talkstack API client (`with TalkstackClient(url, key) as api: …`).

    `max_retries` counts retries after the first attempt. `transport` replaces the HTTP transport
    (e.g. `httpx.MockTransport` in tests); `sleep` is what retries and `wait()` sleep with.
    """

    def __init__(
        self,
        base_url: str,
        api_key: str,
        *,
        timeout: float = 30,
        max_retries: int = 4,
        transport: httpx.BaseTransport | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.max_retries = max_retries
        self.sleep = sleep
        self.wait_strategy: wait_base = wait_retry_after(
            wait_exponential(multiplier=0.5, max=30) + wait_random(0, 0.5)
        )
        user_agent = f"talkstack-python/{__version__}"
        self._http = httpx.Client(
            base_url=self.base_url,
            headers={"Authorization": f"Bearer {api_key}", "User-Agent": user_agent},
            timeout=timeout,
            transport=transport,
        )
        # Pre-signed URLs carry their own signature; the API key must not go to the storage host.
        self._storage = httpx.Client(headers={"User-Agent": user_agent}, timeout=timeout, transport=transport)

    # --- lifecycle -----------------------------------------------------------------------------------

    def close(self) -> None:
        self._http.close()
        self._storage.close()

    def __enter__(self) -> TalkstackClient:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    # --- plumbing ------------------------------------------------------------------------------------

    def _retrying(self, retry: bool) -> Retrying:
        return Retrying(
            stop=stop_after_attempt(self.max_retries + 1 if retry else 1),
            wait=self.wait_strategy,
            retry=retry_if_exception(_retryable),
            sleep=self.sleep,
            before_sleep=_log_retry,
            reraise=True,
        )

    def _call(self, send: Callable[[], T], *, retry: bool = True) -> T:
        """Run `send` under the retry policy; transport failures end as ApiConnectionError."""
        try:
            return self._retrying(retry)(send)
        except httpx.TransportError as exc:
            where = exc.request.url.copy_with(query=None) if _has_request(exc) else self.base_url
            raise ApiConnectionError(
                ErrorCode.MODEL_UNAVAILABLE, f"cannot reach {where}: {type(exc).__name__}: {exc}"
            ) from exc

    def _api(
        self,
        method: str,
        path: str,
        model: type[M],
        *,
        retry: bool = True,
        **kwargs: Any,
    ) -> M:
        def send() -> M:
            response = self._http.request(method, path, **kwargs)
            if not response.is_success:
                raise ApiError.from_response(response)
            return model.model_validate_json(response.content)

        return self._call(send, retry=retry)

    def _generate(
        self,
        path: str,
        model: type[AvatarGenerate | VoiceGenerate | VideoGenerate | CompositionGenerate],
        body: Mapping[str, Any] | BaseModel,
        idempotency_key: str | None,
    ) -> JobAccepted:
        if isinstance(body, BaseModel):
            if not isinstance(body, model):
                raise TypeError(f"expected a {model.__name__} or a dict, got {type(body).__name__}")
            payload: Any = body.model_dump(mode="json", exclude_unset=True)
        else:
            payload = dict(body)
        # One key for every attempt of this call: that is what makes retrying a POST safe (the server
        # answers a repeat with the job the first attempt started), so this POST is retried at all.
        key = idempotency_key or str(uuid.uuid4())
        return self._api(
            "POST", path, JobAccepted, json=payload, headers={"Idempotency-Key": key}, retry=True
        )

    # --- uploads -------------------------------------------------------------------------------------

    def upload(
        self,
        path_or_bytes: str | Path | bytes,
        *,
        filename: str | None = None,
        content_type: str | None = None,
    ) -> str:
        """Upload one media file (path or bytes) through a pre-signed URL; returns its upload id
        (`upl_…`), which goes in a generation request's `inputs`. The type is guessed from the file
        name's extension unless given."""
        if isinstance(path_or_bytes, bytes):
            data: bytes | None = path_or_bytes
            path = None
            size = len(path_or_bytes)
            filename = filename or "upload"
        else:
            path = Path(path_or_bytes)
            data = None
            try:
                size = path.stat().st_size
            except OSError as exc:
                raise TalkstackError(ErrorCode.INPUT_NOT_FOUND, f"{path}: {exc.strerror}") from None
            filename = filename or path.name
        content_type = content_type or _MIME.guess_type(filename)[0]
        if content_type is None:
            raise TalkstackError(
                ErrorCode.UNSUPPORTED_MEDIA,
                f"{filename}: cannot tell the media type from the extension; pass content_type",
            )
        ticket = self._api(
            "POST",
            "/v1/uploads",
            UploadTicket,
            json={"filename": filename, "content_type": content_type, "bytes": size},
        )

        def put() -> None:
            if path is None:
                response = self._storage.put(ticket.url, content=data, headers=ticket.headers)
            else:
                with path.open("rb") as f:
                    response = self._storage.put(ticket.url, content=_chunks(f), headers=ticket.headers)
            if not response.is_success:
                raise ApiError.from_response(response)

        self._call(put)  # a PUT of the same bytes is idempotent
        return ticket.upload_id

    # --- generation ----------------------------------------------------------------------------------

    def generate_avatar(
        self, body: Mapping[str, Any] | AvatarGenerate, *, idempotency_key: str | None = None
    ) -> JobAccepted:
        """`POST /v1/avatar/generate`: photo + speech (or text) → talking-head MP4. Without an
        `idempotency_key` a uuid4 is sent, so retries never start a second job."""
        return self._generate("/v1/avatar/generate", AvatarGenerate, body, idempotency_key)

    def clone_voice(
        self, body: Mapping[str, Any] | VoiceGenerate, *, idempotency_key: str | None = None
    ) -> JobAccepted:
        """`POST /v1/voice/clone`: text (+ optional reference voice) → speech. Idempotent as above."""
        return self._generate("/v1/voice/clone", VoiceGenerate, body, idempotency_key)

    def generate_video(
        self, body: Mapping[str, Any] | VideoGenerate, *, idempotency_key: str | None = None
    ) -> JobAccepted:
        """`POST /v1/video/generate`: prompt (+ optional first frame) → MP4. Idempotent as above."""
        return self._generate("/v1/video/generate", VideoGenerate, body, idempotency_key)

    def generate_composition(
        self, body: Mapping[str, Any] | CompositionGenerate, *, idempotency_key: str | None = None
    ) -> JobAccepted:
        """`POST /v1/composition/generate`: scenes → a finished MP4 with captions, thumbnails and an
        animated preview (docs/compositions.md). Idempotent as above."""
        return self._generate("/v1/composition/generate", CompositionGenerate, body, idempotency_key)

    # --- jobs ----------------------------------------------------------------------------------------

    def get_job(self, job_id: str) -> JobView:
        """A job's status, progress, steps, and (once completed) pre-signed output URLs."""
        return self._api("GET", f"/v1/jobs/{_segment(job_id)}", JobView)

    def list_jobs(
        self,
        status: str | Iterable[str] | None = None,
        limit: int = 20,
        cursor: str | None = None,
    ) -> JobList:
        """One page of this key's jobs, newest first; `status` filters (one or several)."""
        params: dict[str, Any] = {"limit": limit}
        if status:
            params["status"] = status if isinstance(status, str) else ",".join(status)
        if cursor:
            params["cursor"] = cursor
        return self._api("GET", "/v1/jobs", JobList, params=params)

    def iter_jobs(
        self, status: str | Iterable[str] | None = None, page_size: int = 100
    ) -> Iterator[JobSummary]:
        """Every job of this key, newest first, following `next_cursor` page by page."""
        if status is not None and not isinstance(status, str):
            status = ",".join(status)
        cursor = None
        while True:
            page = self.list_jobs(status, page_size, cursor)
            yield from page.jobs
            if not page.next_cursor:
                return
            cursor = page.next_cursor

    def cancel(self, job_id: str) -> JobView:
        """Cancel a queued or running job (a cancelled job answers the same again; a finished one 409)."""
        return self._api("POST", f"/v1/jobs/{_segment(job_id)}/cancel", JobView)

    def delete_job(self, job_id: str) -> JobDeletion:
        """Delete the job and everything it left but its audit entries (a queued or running job is
        cancelled first); the receipt lists what was removed. A 409 while the job's execution sends
        its last notifications is retried after its Retry-After (a few times, then raised)."""
        for attempt in range(FINISHING_RETRIES, -1, -1):
            try:
                return self._api("DELETE", f"/v1/jobs/{_segment(job_id)}", JobDeletion)
            except ApiError as exc:
                if exc.status != 409 or exc.retry_after is None or not attempt:
                    raise
                time.sleep(min(exc.retry_after, MAX_RETRY_AFTER_S))
        raise AssertionError("unreachable")

    def erase_data(self, *, max_calls: int = 100) -> DataErasure:
        """Erase everything of this key, the key itself last (`DELETE /v1/data`, a GDPR erasure),
        calling again while the receipt says `complete: false`; one receipt of all calls. After it
        the key authenticates no more."""
        merged: DataErasure | None = None
        for _ in range(max_calls):
            receipt = self._api("DELETE", "/v1/data", DataErasure)
            if merged is None:
                merged = receipt
            else:
                merged.jobs += receipt.jobs
                merged.objects += receipt.objects
                merged.kept = receipt.kept
                for kind, count in receipt.counts.items():
                    merged.counts[kind] = merged.counts.get(kind, 0) + count
                merged.complete, merged.key_removed = receipt.complete, receipt.key_removed
            if receipt.complete:
                break
        assert merged is not None
        return merged

    def wait(
        self,
        job_id: str,
        *,
        on_progress: Callable[[JobView], None] | None = None,
        timeout: float = 900,
        poll: float = 1.0,
    ) -> JobView:
        """Poll until the job is completed, failed or cancelled and return its last view (a failed
        job is returned, not raised). `on_progress` sees the first view and every change of status
        or progress. Raises `JobWaitTimeout` after `timeout` seconds; the job goes on regardless.
        Each poll is one request against the key's per-minute budget."""
        deadline = time.monotonic() + timeout
        last: tuple[str, float] | None = None
        while True:
            job = self.get_job(job_id)
            if on_progress is not None and (job.status, job.progress) != last:
                on_progress(job)
            last = (job.status, job.progress)
            if job.status in TERMINAL_STATUSES:
                return job
            left = deadline - time.monotonic()
            if left <= 0:
                raise JobWaitTimeout(
                    ErrorCode.GENERATION_FAILED,
                    f"job {job_id} did not finish within {timeout:g} s (still {job.status}, "
                    f"{job.progress:.0%}); it goes on: check it later",
                    job_id=job_id,
                    job=job,
                )
            self.sleep(min(poll, left))

    def download(self, job: JobView, target: str | Path) -> list[Path]:
        """Download every output of a completed job, streamed to disk; returns the files written.

        `target` is a directory (existing, or a path without a suffix): each output keeps its file
        name there. Or it is a file path: the main output (video or audio) is written there and the
        others beside it as `<stem>.<their name>`. Files appear whole or not at all."""
        if job.status != "completed" or job.result is None:
            raise TalkstackError(
                ErrorCode.CONFLICT, f"job {job.job_id} is {job.status}; only completed jobs have outputs"
            )
        target = Path(target)
        as_dir = target.is_dir() or not target.suffix
        folder = target if as_dir else target.parent
        folder.mkdir(parents=True, exist_ok=True)
        main = next((o for o in job.result.outputs if o.kind in ("video", "audio")), None)
        written: list[Path] = []
        for output in job.result.outputs:
            name = Path(output.key).name or f"{output.kind}.bin"
            path = folder / name
            if not as_dir:
                path = target if output is main else folder / f"{target.stem}.{name}"
            self._download(output.url, path)
            written.append(path)
        return written

    def _download(self, url: str, path: Path) -> None:
        partial = path.with_name(path.name + ".part")

        def get() -> None:
            with self._storage.stream("GET", url) as response:
                if not response.is_success:
                    raise ApiError.from_response(response)
                with partial.open("wb") as f:
                    for chunk in response.iter_bytes(CHUNK_BYTES):
                        f.write(chunk)

        try:
            self._call(get)
            partial.replace(path)
        finally:
            partial.unlink(missing_ok=True)

    # --- webhooks -----------------------------------------------------------------------------------

    def create_webhook(
        self, url: str, events: Iterable[str] | None = None, description: str | None = None
    ) -> WebhookCreated:
        """Register an endpoint for this key's events; the answer holds its secret, shown only now.
        Not retried: a retry after a lost answer would register a second endpoint."""
        body: dict[str, Any] = {"url": url}
        if events is not None:
            body["events"] = list(events)
        if description is not None:
            body["description"] = description
        return self._api("POST", "/v1/webhooks", WebhookCreated, json=body, retry=False)

    def list_webhooks(self) -> WebhookList:
        """This key's endpoints (without their secrets)."""
        return self._api("GET", "/v1/webhooks", WebhookList)

    def get_webhook(self, webhook_id: str) -> WebhookView:
        return self._api("GET", f"/v1/webhooks/{_segment(webhook_id)}", WebhookView)

    def delete_webhook(self, webhook_id: str) -> None:
        def send() -> None:
            response = self._http.request("DELETE", f"/v1/webhooks/{_segment(webhook_id)}")
            if not response.is_success:
                raise ApiError.from_response(response)

        self._call(send)

    def rotate_webhook(self, webhook_id: str) -> WebhookCreated:
        """A new secret for the endpoint (shown only now); the old one signs too until
        `previous_secret_expires_at`. Not retried (a retry would rotate twice)."""
        return self._api("POST", f"/v1/webhooks/{_segment(webhook_id)}/rotate", WebhookCreated, retry=False)

    def webhook_secret(self) -> WebhookSecret:
        """This key's secret for per-request webhooks (`notify.webhook_url`)."""
        return self._api("GET", "/v1/webhooks/secret", WebhookSecret)

    def rotate_webhook_secret(self) -> WebhookSecret:
        return self._api("POST", "/v1/webhooks/secret/rotate", WebhookSecret, retry=False)

    # --- templates ----------------------------------------------------------------------------------

    def list_templates(self) -> TemplateList:
        """The bundled templates and this key's own (id, version, name, aspect, variable names)."""
        return self._api("GET", "/v1/templates", TemplateList)

    def get_template(self, template_id: str) -> TemplateView:
        """One template's whole document: variables with their types and defaults, an example."""
        return self._api("GET", f"/v1/templates/{_segment(template_id)}", TemplateView)

    def put_template(
        self, document: Mapping[str, Any] | BaseModel, template_id: str | None = None
    ) -> TemplateView:
        """Create or replace one of this key's templates (its id: `template_id`, else the
        document's). Replacing is idempotent, so it is retried like a read."""
        payload: Any = (
            json.loads(document.model_dump_json(exclude_none=True))
            if isinstance(document, BaseModel)
            else dict(document)
        )
        name = template_id or payload.get("id")
        if not isinstance(name, str) or not name:
            raise ValueError("put_template: give template_id or a document with an id")
        return self._api("PUT", f"/v1/templates/{_segment(name)}", TemplateView, json=payload)

    def delete_template(self, template_id: str) -> None:
        def send() -> None:
            response = self._http.request("DELETE", f"/v1/templates/{_segment(template_id)}")
            if not response.is_success:
                raise ApiError.from_response(response)

        self._call(send)

    def generate_from_template(
        self,
        template_id: str,
        variables: Mapping[str, Any] | None = None,
        *,
        preview: bool | None = None,
        idempotency_key: str | None = None,
        **fields: Any,
    ) -> JobAccepted:
        """A composition job from a template: `variables` by name (media as upload ids, `s3://`
        refs or `asset:<name>`); `fields`: output, notify, callback_id, metadata, consent.
        TEMPLATE_VARIABLES_INVALID (an ApiError) lists every problem in `details["problems"]`."""
        body = TemplateGenerate.model_validate(
            {
                "variables": dict(variables or {}),
                **({"preview": preview} if preview is not None else {}),
                **fields,
            }
        )
        key = idempotency_key or str(uuid.uuid4())  # one key for every attempt: see _generate
        return self._api(
            "POST",
            f"/v1/templates/{_segment(template_id)}/generate",
            JobAccepted,
            json=body.model_dump(mode="json", exclude_unset=True),
            headers={"Idempotency-Key": key},
        )

    def render_job(self, job_id: str, *, idempotency_key: str | None = None) -> JobAccepted:
        """The full render of a preview job (`preview: true`): a new job, same request."""
        key = idempotency_key or str(uuid.uuid4())
        return self._api(
            "POST", f"/v1/jobs/{_segment(job_id)}/render", JobAccepted, headers={"Idempotency-Key": key}
        )

    # --- models, usage, health -----------------------------------------------------------------------

    def models(self) -> ModelList:
        """Every model, its limits and licence, and whether this stack can run it now."""
        return self._api("GET", "/v1/models", ModelList)

    def usage(self, period: str = "day", start: datetime | None = None, end: datetime | None = None) -> Usage:
        """Jobs, rendered seconds, GPU seconds and estimated cost per day or month (timezone-aware
        `start`/`end`; default: the last 30 days or 12 months)."""
        params: dict[str, Any] = {"period": period}
        for name, value in (("start", start), ("end", end)):
            if value is not None:
                params[name] = value.isoformat()
        return self._api("GET", "/v1/usage", Usage, params=params)

    def audit(
        self,
        action: str | Iterable[str] | None = None,
        start: datetime | None = None,
        end: datetime | None = None,
        order: str = "newest",
        limit: int = 50,
        cursor: str | None = None,
    ) -> AuditTrail:
        """One page of this key's own audit trail (`newest` or `oldest` first), optionally only
        some actions (e.g. `job.submitted`) within [start, end)."""
        params: dict[str, Any] = {"order": order, "limit": limit}
        if action:
            params["action"] = action if isinstance(action, str) else ",".join(action)
        for name, value in (("start", start), ("end", end)):
            if value is not None:
                params[name] = value.isoformat()
        if cursor:
            params["cursor"] = cursor
        return self._api("GET", "/v1/audit", AuditTrail, params=params)

    def health(self) -> Health:
        """Liveness and version (needs no key)."""
        return self._api("GET", "/health", Health)


def _chunks(f: Any) -> Iterator[bytes]:
    while chunk := f.read(CHUNK_BYTES):
        yield chunk


def _segment(job_id: str) -> str:
    """A job id as one path segment (an id with a '/' must not reach another route)."""
    return quote(job_id, safe="")


def _has_request(exc: httpx.TransportError) -> bool:
    try:
        exc.request  # noqa: B018 - raises RuntimeError when the error has no request
    except RuntimeError:
        return False
    return True
