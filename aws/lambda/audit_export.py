"""Daily (EventBridge schedule) → yesterday's audit entries as JSON Lines in S3
(`audit/<yyyy>/<mm>/<dd>.jsonl`); `{"day": "yyyy-mm-dd"}` exports that day instead."""

from aws_lambda_powertools import Logger, Tracer
from aws_lambda_powertools.utilities.typing import LambdaContext

from talkstack.pipeline.audit import AuditLog, export_day_for
from talkstack.pipeline.aws import TRACED_MODULES
from talkstack.pipeline.services import services

logger = Logger(service="talkstack")
tracer = Tracer(service="talkstack", patch_modules=TRACED_MODULES)
svc = services()
audit = AuditLog(svc.config.jobs_table, svc.store.ddb, svc.config.audit_retention_days)


@logger.inject_lambda_context
@tracer.capture_lambda_handler
def handler(event: dict, context: LambdaContext) -> dict:
    day = export_day_for(event or {})
    bucket = svc.config.audit_export_bucket
    key, count = audit.export_day(svc.s3, bucket, day)
    logger.info("audit exported", extra={"day": day.isoformat(), "entries": count, "key": key})
    return {"day": day.isoformat(), "bucket": bucket, "key": key, "entries": count}
