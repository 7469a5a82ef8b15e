"""API Gateway REQUEST authorizer: a talkstack key in, an IAM policy and a usage key out."""

from aws_lambda_powertools import Logger, Tracer
from aws_lambda_powertools.utilities.data_classes import event_source
from aws_lambda_powertools.utilities.data_classes.api_gateway_authorizer_event import (
    APIGatewayAuthorizerRequestEvent,
)
from aws_lambda_powertools.utilities.typing import LambdaContext

from talkstack.api.authorizer import authorize
from talkstack.api.keys import KeyStore
from talkstack.pipeline.aws import TRACED_MODULES, client
from talkstack.pipeline.config import get_config

logger = Logger(service="talkstack")
tracer = Tracer(service="talkstack", patch_modules=TRACED_MODULES)
keys = KeyStore(get_config().jobs_table, client("dynamodb"))


@logger.inject_lambda_context
@tracer.capture_lambda_handler(capture_response=False)  # the usage key it returns is a secret
@event_source(data_class=APIGatewayAuthorizerRequestEvent)
def handler(event: APIGatewayAuthorizerRequestEvent, context: LambdaContext) -> dict:
    try:
        return authorize(event, keys)
    except PermissionError:  # its message, "Unauthorized", is what API Gateway turns into 401
        logger.info("refused", extra={"path": event.path})
        raise
