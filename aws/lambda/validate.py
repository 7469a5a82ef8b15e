"""State `Validate`: check the request (any entry point) and create the queued job record."""

from aws_lambda_powertools import Logger, Tracer
from aws_lambda_powertools.utilities.parser import event_parser
from aws_lambda_powertools.utilities.typing import LambdaContext

from talkstack.contract.state import ValidateInput, ValidateOutput
from talkstack.pipeline.audit import AuditLog
from talkstack.pipeline.aws import TRACED_MODULES
from talkstack.pipeline.services import job_step, services
from talkstack.pipeline.validate import open_job

logger = Logger(service="talkstack")
tracer = Tracer(service="talkstack", patch_modules=TRACED_MODULES)
svc = services()
audit = AuditLog(svc.config.jobs_table, svc.store.ddb, svc.config.audit_retention_days)


@logger.inject_lambda_context
@tracer.capture_lambda_handler
@job_step("validate")
@event_parser(model=ValidateInput)
def handler(event: ValidateInput, context: LambdaContext) -> dict:
    job_id = event.execution_name
    record, created = open_job(event.input, job_id, event.execution_arn, svc.config, svc.store, svc.s3, audit)
    if created:
        svc.emit(record, "job.queued")
    logger.info("validated", extra={"job_id": job_id, "created": created})
    return ValidateOutput(job_id=job_id, task=record.task).model_dump()
