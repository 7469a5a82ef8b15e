"""S3 ObjectCreated (worker marker in the work bucket) → SendTaskSuccess / Failure / Heartbeat."""

from urllib.parse import unquote_plus

from aws_lambda_powertools import Logger, Tracer
from aws_lambda_powertools.utilities.data_classes import S3Event, event_source
from aws_lambda_powertools.utilities.typing import LambdaContext

from talkstack.pipeline.aws import TRACED_MODULES
from talkstack.pipeline.complete import Completer
from talkstack.pipeline.services import services

logger = Logger(service="talkstack")
tracer = Tracer(service="talkstack", patch_modules=TRACED_MODULES)
svc = services()
completer = Completer(svc.config, svc.store, svc.s3, svc.sfn, svc.emit)


@logger.inject_lambda_context
@tracer.capture_lambda_handler
@event_source(data_class=S3Event)
def handler(event: S3Event, context: LambdaContext) -> dict:
    results = []
    for record in event.records:
        key = unquote_plus(record.s3.get_object.key)
        outcome = completer.handle(record.s3.bucket.name, key)
        logger.info("marker", extra={"key": key, "outcome": outcome})
        results.append({"key": key, "outcome": outcome})
    return {"results": results}
