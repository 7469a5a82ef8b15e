"""What every handler shares, built once per container: config, the jobs table, AWS clients, and
the decorator that turns an expected failure into the state machine's `JobFailed` error."""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, TypeVar

from talkstack.contract.events import JobEvent
from talkstack.contract.fields import EventType
from talkstack.contract.record import JobError, JobRecord, StepName
from talkstack.errors import ErrorCode, TalkstackError
from talkstack.pipeline.aws import UrlSigner, client, presigner
from talkstack.pipeline.config import PipelineConfig, get_config
from talkstack.pipeline.emit import emit_for
from talkstack.pipeline.failure import JobFailed
from talkstack.pipeline.store import JobStore

F = TypeVar("F", bound=Callable[..., Any])


@dataclass(frozen=True)
class Services:
    config: PipelineConfig
    store: JobStore
    s3: Any
    presign: UrlSigner
    """Pre-signs with a client of each bucket's region (aws.RegionalPresigner)."""
    sfn: Any
    sns: Any
    sqs: Any

    def emit(self, record: JobRecord, type: EventType) -> JobEvent:
        return emit_for(self.config, record, type)


@lru_cache(maxsize=1)
def services() -> Services:
    config = get_config()
    return Services(
        config=config,
        store=JobStore(config.jobs_table, retention_days=config.record_retention_days),
        s3=client("s3"),
        presign=presigner(config.bucket_regions),
        sfn=client("stepfunctions"),
        sns=client("sns"),
        sqs=client("sqs"),
    )


def job_step(step: StepName | None) -> Callable[[F], F]:
    """Failures leave the handler as JobFailed carrying a JobError that names the step: a
    TalkstackError keeps its code; anything else is GENERATION_FAILED ("internal error in the
    finalize step: TypeError: …"). `step=None` takes the step from the event's "step" field (the
    dispatch handler serves three). AWS's own service errors (throttling, Lambda.ServiceException)
    happen outside the handler and stay retryable in the state machine."""

    def wrap(fn: F) -> F:
        @functools.wraps(fn)
        def inner(event: dict[str, Any], context: Any) -> Any:
            name = step or event.get("step")
            try:
                return fn(event, context)
            except TalkstackError as exc:
                raise JobFailed.from_talkstack(exc, name) from exc
            except Exception as exc:
                message = f"internal error in the {name} step: {type(exc).__name__}: {exc}"
                raise JobFailed(
                    JobError(code=ErrorCode.GENERATION_FAILED, message=message, step=name)
                ) from exc

        return inner  # type: ignore[return-value]

    return wrap
