"""State `Finalize`: publish outputs to their final keys, write result.json, mark completed."""

from aws_lambda_powertools import Logger, Tracer
from aws_lambda_powertools.utilities.parser import event_parser
from aws_lambda_powertools.utilities.typing import LambdaContext

from talkstack.contract.state import JobInput
from talkstack.pipeline.aioboto3_s3 import session_s3
from talkstack.pipeline.aws import TRACED_MODULES
from talkstack.pipeline.finalize import finalize_job
from talkstack.pipeline.services import job_step, services

logger = Logger(service="talkstack")
tracer = Tracer(service="talkstack", patch_modules=TRACED_MODULES)
svc = services()
aio_s3 = session_s3()  # the concurrent HEADs and copies of publishing (talkstack/pipeline/aio_s3.py)


@logger.inject_lambda_context
@tracer.capture_lambda_handler
@job_step("finalize")
@event_parser(model=JobInput)
def handler(event: JobInput, context: LambdaContext) -> dict:
    record = finalize_job(event.job_id, svc.config, svc.store, svc.s3, aio_s3)
    assert record.result is not None
    outputs = {output.kind: f"s3://{output.bucket}/{output.key}" for output in record.result.outputs}
    logger.info("finalized", extra={"job_id": record.job_id, "outputs": outputs})
    return {"outputs": outputs}
