"""API Gateway (REST, proxy integration) → the talkstack REST API (talkstack.api.app)."""

from aws_lambda_powertools import Logger, Tracer
from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.utilities.typing import LambdaContext

from talkstack.api.app import handle
from talkstack.pipeline.aws import TRACED_MODULES

logger = Logger(service="talkstack")
tracer = Tracer(service="talkstack", patch_modules=TRACED_MODULES)


@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_REST)
@tracer.capture_lambda_handler(capture_response=False)  # response bodies stay out of traces
def handler(event: dict, context: LambdaContext) -> dict:
    return handle(event, context)
