"""State `Moderate`: judge the job's texts by the operator's policy (and, on Modal, the text-safety
classifier) before any GPU work; a refusal fails the job with CONTENT_REFUSED."""

from aws_lambda_powertools import Logger, Tracer
from aws_lambda_powertools.utilities.parser import event_parser
from aws_lambda_powertools.utilities.typing import LambdaContext

from talkstack.contract.state import JobInput
from talkstack.pipeline.audit import AuditLog
from talkstack.pipeline.aws import TRACED_MODULES, client
from talkstack.pipeline.moderate import classifier_for, moderate_job
from talkstack.pipeline.services import job_step, services
from talkstack.settings.moderation import get_moderation_settings

logger = Logger(service="talkstack")
tracer = Tracer(service="talkstack", patch_modules=TRACED_MODULES)
svc = services()


@logger.inject_lambda_context
@tracer.capture_lambda_handler
@job_step("moderate")
@event_parser(model=JobInput)
def handler(event: JobInput, context: LambdaContext) -> dict:
    config = svc.config
    audit = AuditLog(config.jobs_table, client("dynamodb"), config.audit_retention_days)
    classifier = classifier_for(config, get_moderation_settings(), lambda: client("secretsmanager"))
    verdict = moderate_job(event.job_id, config, svc.store, audit, classifier)
    # The category and the policy version only: never the texts.
    logger.info(
        "moderated",
        extra={"job_id": event.job_id, "decision": verdict.decision, "category": verdict.category},
    )
    return {"job_id": event.job_id, "decision": verdict.decision}
