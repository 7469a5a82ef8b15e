"""S3 ObjectCreated (manifest under the input prefix) → one execution per upload."""

from dataclasses import asdict
from urllib.parse import unquote_plus

from aws_lambda_powertools import Logger, Tracer
from aws_lambda_powertools.utilities.data_classes import S3Event, event_source
from aws_lambda_powertools.utilities.typing import LambdaContext

from talkstack.pipeline.audit import AuditLog
from talkstack.pipeline.aws import TRACED_MODULES
from talkstack.pipeline.ingest import Ingestor
from talkstack.pipeline.services import services

logger = Logger(service="talkstack")
tracer = Tracer(service="talkstack", patch_modules=TRACED_MODULES)
svc = services()
audit = AuditLog(svc.config.jobs_table, svc.store.ddb, svc.config.audit_retention_days)
ingestor = Ingestor(svc.config, svc.store, svc.s3, svc.sfn, svc.sqs, svc.emit, audit)


@logger.inject_lambda_context
@tracer.capture_lambda_handler
@event_source(data_class=S3Event)
def handler(event: S3Event, context: LambdaContext) -> dict:
    outcomes = []
    for record in event.records:
        # Event keys are URL-encoded ('+' for space); the object's real key is the decoded one.
        key = unquote_plus(record.s3.get_object.key)
        outcome = ingestor.handle(record.s3.bucket.name, key)
        logger.info("ingest", extra={"key": key, **asdict(outcome)})
        outcomes.append(asdict(outcome))
    return {"outcomes": outcomes}
