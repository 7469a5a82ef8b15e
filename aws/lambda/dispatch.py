"""States `Voice` / `Avatar` / `AvatarChunk` / `Stitch` / `Video` (`lambda:invoke.waitForTaskToken`):
start a worker attempt."""

from aws_lambda_powertools import Logger, Tracer
from aws_lambda_powertools.utilities.parser import event_parser
from aws_lambda_powertools.utilities.typing import LambdaContext

from talkstack.contract.state import DispatchInput, DispatchOutput
from talkstack.pipeline.aws import TRACED_MODULES, client
from talkstack.pipeline.backends import Backends
from talkstack.pipeline.dispatch import dispatch_step
from talkstack.pipeline.services import job_step, services

logger = Logger(service="talkstack")
tracer = Tracer(service="talkstack", patch_modules=TRACED_MODULES)
svc = services()
backends = Backends(svc.config, lambda: client("secretsmanager"))


@logger.inject_lambda_context
@tracer.capture_lambda_handler
@job_step(None)
@event_parser(model=DispatchInput)
def handler(event: DispatchInput, context: LambdaContext) -> dict:
    task, record, first = dispatch_step(event, svc.config, svc.store, svc.presign, backends)
    if first:
        svc.emit(record, "job.started")
    logger.info("dispatched", extra={"job_id": task.job_id, "attempt_id": task.attempt_id})
    return DispatchOutput(attempt_id=task.attempt_id).model_dump()
