"""State `Plan`: the job's engine steps and their heartbeat / timeout limits."""

from aws_lambda_powertools import Logger
from aws_lambda_powertools.utilities.typing import LambdaContext

from talkstack.pipeline.plan import plan_job
from talkstack.pipeline.services import job_step, services

logger = Logger(service="talkstack")
svc = services()


@logger.inject_lambda_context
@job_step("plan")
def handler(event: dict, context: LambdaContext) -> dict:
    plan = plan_job(event["job_id"], svc.config, svc.store)
    logger.info("planned", extra={"job_id": event["job_id"], "plan": plan})
    return plan
