"""Every job event → SNS topic + signed webhook (+ the job's timeline and delivery log)."""

import warnings

from aws_lambda_powertools import Logger, Tracer
from aws_lambda_powertools.utilities.parser import event_parser
from aws_lambda_powertools.utilities.typing import LambdaContext

from talkstack.contract.state import NotifyRequest
from talkstack.pipeline.aws import TRACED_MODULES
from talkstack.pipeline.metrics import metrics
from talkstack.pipeline.notify import notify
from talkstack.pipeline.services import services

logger = Logger(service="talkstack")
tracer = Tracer(service="talkstack", patch_modules=TRACED_MODULES)
# Only terminal events and failed webhooks produce metrics; the other events have none to flush.
warnings.filterwarnings("ignore", message="No application metrics to publish")
svc = services()


@metrics.log_metrics
@logger.inject_lambda_context
@tracer.capture_lambda_handler
@event_parser(model=NotifyRequest)
def handler(event: NotifyRequest, context: LambdaContext) -> dict:
    sent = notify(event, svc.config, svc.store, svc.sns)
    logger.info("notified", extra=sent)
    return sent
