"""Hand a job event to the notify Lambda, which alone publishes to SNS and calls webhooks.

Events raised outside the state machine (queued, started, progress, and failures found at ingest)
are built here, at the moment they happen, and sent asynchronously: the sender never waits for a
slow webhook, and the event carries the job's state as it was, not as it is when notify runs.
"""

from __future__ import annotations

from talkstack.contract.events import JobEvent
from talkstack.contract.fields import EventType
from talkstack.contract.record import JobRecord
from talkstack.contract.state import NotifyRequest
from talkstack.pipeline.aws import client
from talkstack.pipeline.config import PipelineConfig


def emit(config: PipelineConfig, event: JobEvent) -> None:
    client("lambda").invoke(
        FunctionName=config.notify_function,
        InvocationType="Event",
        Payload=NotifyRequest.of(event).model_dump_json().encode(),
    )


def emit_for(config: PipelineConfig, record: JobRecord, type: EventType) -> JobEvent:
    event = JobEvent.from_record(record, type)
    emit(config, event)
    return event
