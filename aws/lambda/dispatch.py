"""States `Voice` / `Avatar` / `Video` (`lambda:invoke.waitForTaskToken`): start a worker attempt."""

from aws_lambda_powertools import Logger
from aws_lambda_powertools.utilities.typing import LambdaContext

from talkstack.pipeline.aws import client
from talkstack.pipeline.backends import Backends
from talkstack.pipeline.dispatch import dispatch_step
from talkstack.pipeline.services import job_step, services

logger = Logger(service="talkstack")
svc = services()
backends = Backends(svc.config, lambda: client("secretsmanager"))


@logger.inject_lambda_context
@job_step(None)
def handler(event: dict, context: LambdaContext) -> dict:
    task, record, first = dispatch_step(
        event["job_id"],
        event["step"],
        event["task_token"],
        int(event.get("retry_count", 0)),
        svc.config,
        svc.store,
        svc.s3,
        backends,
        chunk=event.get("chunk"),
    )
    if first:
        svc.emit(record, "job.started")
    logger.info("dispatched", extra={"job_id": task.job_id, "attempt_id": task.attempt_id})
    return {"attempt_id": task.attempt_id}
