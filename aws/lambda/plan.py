"""State `Plan`: the job's engine steps and their heartbeat / timeout limits."""

from aws_lambda_powertools import Logger, Tracer
from aws_lambda_powertools.utilities.parser import event_parser
from aws_lambda_powertools.utilities.typing import LambdaContext

from talkstack.contract.state import JobInput
from talkstack.pipeline.aws import TRACED_MODULES
from talkstack.pipeline.plan import plan_job
from talkstack.pipeline.services import job_step, services

logger = Logger(service="talkstack")
tracer = Tracer(service="talkstack", patch_modules=TRACED_MODULES)
svc = services()


@logger.inject_lambda_context
@tracer.capture_lambda_handler
@job_step("plan")
@event_parser(model=JobInput)
def handler(event: JobInput, context: LambdaContext) -> dict:
    plan = plan_job(event.job_id, svc.config, svc.store)
    logger.info("planned", extra={"job_id": event.job_id, "plan": plan.model_dump(mode="json")})
    return plan.model_dump(mode="json")
