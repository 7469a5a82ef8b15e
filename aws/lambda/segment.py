"""State `Segment` (parallel long avatars): cut the speech at pauses into chunks for the Map state."""

from aws_lambda_powertools import Logger, Tracer
from aws_lambda_powertools.utilities.parser import event_parser
from aws_lambda_powertools.utilities.typing import LambdaContext

from talkstack.contract.state import JobInput
from talkstack.pipeline.aws import TRACED_MODULES
from talkstack.pipeline.segment import segment_job
from talkstack.pipeline.services import job_step, services

logger = Logger(service="talkstack")
tracer = Tracer(service="talkstack", patch_modules=TRACED_MODULES)
svc = services()


@logger.inject_lambda_context
@tracer.capture_lambda_handler
@job_step("avatar")
@event_parser(model=JobInput)
def handler(event: JobInput, context: LambdaContext) -> dict:
    result = segment_job(event.job_id, svc.config, svc.store, svc.s3)
    logger.info("segmented", extra={"job_id": event.job_id, "chunks": result.count})
    return result.model_dump(mode="json")
