"""Names of the local stack's resources, and the environment its handlers read.

Everything derives from a stack name and a port, so `talkstack up`, `talkstack submit` and the
tests agree without any shared state. In AWS the CDK stack chooses the names and sets the same
`TALKSTACK_*` variables on each function.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import talkstack
from talkstack.settings.local import API_PORT_OFFSET, DEFAULT_PORT, DEFAULT_STACK, get_local_settings

HANDLERS: tuple[str, ...] = (
    "api",
    "ingest",
    "validate",
    "moderate",
    "plan",
    "segment",
    "dispatch",
    "complete",
    "finalize",
    "fail",
    "notify",
    "audit_export",
)
"""One Lambda per module in aws/lambda/, each exposing `handler(event, context)`."""

REGION = "us-east-1"
ACCOUNT = "123456789012"  # moto's default account
# Fixed, documented local secret: local webhooks are signed with it so receivers can verify.
LOCAL_WEBHOOK_SECRET = "whsec_dGFsa3N0YWNrLWxvY2FsLXdlYmhvb2stc2VjcmV0LTAx"


def repo_root() -> Path:
    """The checkout this package runs from (local mode needs aws/ beside the package)."""
    return Path(talkstack.__file__).resolve().parents[1]


def lambda_root() -> Path:
    return get_local_settings().lambda_root or repo_root() / "aws" / "lambda"


def definition_path() -> Path:
    return get_local_settings().definition or repo_root() / "aws" / "stepfunctions" / "job.asl.json"


@dataclass(frozen=True)
class LocalResources:
    stack: str = DEFAULT_STACK
    port: int = DEFAULT_PORT
    host: str = "127.0.0.1"
    region: str = REGION
    account: str = ACCOUNT

    def __post_init__(self) -> None:
        if not re.fullmatch(r"[a-z0-9][a-z0-9-]{1,40}[a-z0-9]", self.stack):
            raise ValueError(f"stack name must be 3-42 lowercase letters, digits or '-', got {self.stack!r}")

    @property
    def endpoint(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def api_port(self) -> int:
        """The REST API (local gateway) listens beside the AWS endpoint."""
        return self.port + API_PORT_OFFSET

    @property
    def api_url(self) -> str:
        return f"http://{self.host}:{self.api_port}"

    @property
    def input_bucket(self) -> str:
        return f"{self.stack}-inputs"

    @property
    def output_bucket(self) -> str:
        return f"{self.stack}-outputs"

    @property
    def work_bucket(self) -> str:
        return f"{self.stack}-work"

    @property
    def jobs_table(self) -> str:
        return f"{self.stack}-jobs"

    @property
    def topic_name(self) -> str:
        return f"{self.stack}-events"

    @property
    def topic_arn(self) -> str:
        return f"arn:aws:sns:{self.region}:{self.account}:{self.topic_name}"

    @property
    def dlq_name(self) -> str:
        return f"{self.stack}-ingest-dlq"

    @property
    def dlq_url(self) -> str:
        return f"{self.endpoint}/{self.account}/{self.dlq_name}"

    @property
    def state_machine_name(self) -> str:
        return f"{self.stack}-jobs"

    @property
    def state_machine_arn(self) -> str:
        return f"arn:aws:states:{self.region}:{self.account}:stateMachine:{self.state_machine_name}"

    @property
    def role_arn(self) -> str:
        return f"arn:aws:iam::{self.account}:role/{self.stack}-role"

    def function_name(self, handler: str) -> str:
        return f"{self.stack}-{handler}"

    def function_arn(self, handler: str) -> str:
        return f"arn:aws:lambda:{self.region}:{self.account}:function:{self.function_name(handler)}"

    def definition_substitutions(self) -> dict[str, str]:
        """`${ValidateFunctionArn}` etc., the same keys the CDK stack passes."""
        return {f"{name.capitalize()}FunctionArn": self.function_arn(name) for name in HANDLERS}

    def client_env(self) -> dict[str, str]:
        """What any AWS client (boto3, the AWS CLI) needs to talk to the local stack."""
        return {
            "AWS_ENDPOINT_URL": self.endpoint,
            "AWS_ACCESS_KEY_ID": "local",
            "AWS_SECRET_ACCESS_KEY": "local",
            "AWS_DEFAULT_REGION": self.region,
            "AWS_REGION": self.region,
        }

    @property
    def c2pa_secret(self) -> str:
        return f"{self.stack}/c2pa-signer"

    def pipeline_env(self, **overrides: str) -> dict[str, str]:
        """The `TALKSTACK_*` variables of talkstack.pipeline.config.PipelineConfig."""
        env = {
            "TALKSTACK_INPUT_BUCKET": self.input_bucket,
            "TALKSTACK_OUTPUT_BUCKET": self.output_bucket,
            "TALKSTACK_WORK_BUCKET": self.work_bucket,
            "TALKSTACK_JOBS_TABLE": self.jobs_table,
            "TALKSTACK_EVENTS_TOPIC_ARN": self.topic_arn,
            "TALKSTACK_INGEST_DLQ_URL": self.dlq_url,
            "TALKSTACK_STATE_MACHINE_ARN": self.state_machine_arn,
            "TALKSTACK_NOTIFY_FUNCTION": self.function_name("notify"),
            "TALKSTACK_WORKER_BACKEND": "local",
            "TALKSTACK_WEBHOOK_SECRET": LOCAL_WEBHOOK_SECRET,
            "TALKSTACK_ALLOW_LOOPBACK_WEBHOOKS": "true",
            # The stack's Secrets Manager holds a throwaway C2PA signer (LocalStack creates it), read
            # by finalize as a deployed stack reads the operator's.
            "TALKSTACK_C2PA_SECRET": self.c2pa_secret,
        }
        env.update({f"TALKSTACK_{key.upper()}": value for key, value in overrides.items()})
        return env
