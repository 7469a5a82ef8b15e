"""State `RecordFailure` (every Catch): record why the job failed; stop the job's workers still
running; remove anything half-published."""

from aws_lambda_powertools import Logger, Tracer
from aws_lambda_powertools.utilities.parser import event_parser
from aws_lambda_powertools.utilities.typing import LambdaContext

from talkstack.contract.state import FailureInput
from talkstack.pipeline.aws import TRACED_MODULES, client
from talkstack.pipeline.backends import Backends
from talkstack.pipeline.failure import record_failure
from talkstack.pipeline.services import services

logger = Logger(service="talkstack")
tracer = Tracer(service="talkstack", patch_modules=TRACED_MODULES)
svc = services()
backends = Backends(svc.config, lambda: client("secretsmanager"))


@logger.inject_lambda_context
@tracer.capture_lambda_handler
@event_parser(model=FailureInput)
def handler(event: FailureInput, context: LambdaContext) -> dict:
    record = record_failure(
        event.job_id,
        event.error or {},
        event.input,
        event.execution_arn,
        svc.config,
        svc.store,
        svc.s3,
        backends,
        time_left_s=lambda: context.get_remaining_time_in_millis() / 1000,
    )
    if record.status == "cancelled":
        # Cancelled through the API while a step was in flight: the cancel already said so.
        logger.info("job was cancelled", extra={"job_id": record.job_id})
        return {"job_id": record.job_id, "code": "CANCELLED", "message": "the job was cancelled"}
    if record.status == "completed":
        # Finalize failed after the job turned completed: the outputs stay published, and
        # NotifyFailed announces the completion the record holds (talkstack.pipeline.notify).
        logger.warning("failure after completion", extra={"job_id": record.job_id, "error": event.error})
        return {
            "job_id": record.job_id,
            "code": "COMPLETED",
            "message": "the job completed before this failure",
        }
    assert record.error is not None
    logger.warning(
        "job failed", extra={"job_id": record.job_id, "error": record.error.model_dump(mode="json")}
    )
    return {"job_id": record.job_id, "code": str(record.error.code), "message": record.error.message}
