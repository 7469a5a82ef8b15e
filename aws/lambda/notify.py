"""Every job event → SNS topic + signed webhook (+ the job's timeline and delivery log)."""

from aws_lambda_powertools import Logger
from aws_lambda_powertools.utilities.typing import LambdaContext

from talkstack.pipeline.notify import notify
from talkstack.pipeline.services import services

logger = Logger(service="talkstack")
svc = services()


@logger.inject_lambda_context
def handler(event: dict, context: LambdaContext) -> dict:
    sent = notify(event, svc.config, svc.store, svc.sns)
    logger.info("notified", extra=sent)
    return sent
