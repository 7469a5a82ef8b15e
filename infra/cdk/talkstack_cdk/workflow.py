"""The job state machine: aws/stepfunctions/job.asl.json as it is, its `${NameFunctionArn}`
placeholders left to CloudFormation's DefinitionSubstitutions (the same text substitution local
mode does), logging and X-Ray tracing on. There is no second copy of the definition."""

from __future__ import annotations

import json
import re

from aws_cdk import ArnFormat, RemovalPolicy, Stack
from aws_cdk import aws_logs as logs
from aws_cdk import aws_stepfunctions as sfn
from constructs import Construct

from talkstack_cdk.bundling import REPO
from talkstack_cdk.functions import PipelineFunctions, log_retention
from talkstack_cdk.permissions import allow
from talkstack_cdk.settings import DeploySettings

DEFINITION = REPO / "aws" / "stepfunctions" / "job.asl.json"
PLACEHOLDER = re.compile(r"\$\{(\w+)FunctionArn\}")


def definition_text() -> str:
    text = DEFINITION.read_text(encoding="utf-8")
    json.loads(text)  # a broken file fails synth, not the deployment
    return text


def placeholder_functions(text: str) -> list[str]:
    """Handler names the definition calls, e.g. `Validate` -> `validate`."""
    return sorted({name.lower() for name in PLACEHOLDER.findall(text)})


def state_machine_name(settings: DeploySettings) -> str:
    return f"{settings.stack_name}-jobs"


def state_machine_arn(scope: Construct, settings: DeploySettings) -> str:
    """Built from the name, not taken from the resource: the functions the state machine calls
    also need its ARN, and a reference would be a dependency cycle."""
    return Stack.of(scope).format_arn(
        service="states",
        resource="stateMachine",
        resource_name=state_machine_name(settings),
        arn_format=ArnFormat.COLON_RESOURCE_NAME,
    )


def executions_arn(scope: Construct, settings: DeploySettings) -> str:
    return Stack.of(scope).format_arn(
        service="states",
        resource="execution",
        resource_name=f"{state_machine_name(settings)}:*",
        arn_format=ArnFormat.COLON_RESOURCE_NAME,
    )


class JobWorkflow(Construct):
    def __init__(
        self, scope: Construct, id: str, *, settings: DeploySettings, functions: PipelineFunctions
    ) -> None:
        super().__init__(scope, id)
        text = definition_text()
        called = placeholder_functions(text)
        missing = [name for name in called if name not in functions.functions]
        if missing:
            raise ValueError(f"{DEFINITION.name} calls functions the stack does not define: {missing}")
        self.log_group = logs.LogGroup(
            self,
            "Logs",
            log_group_name=f"/aws/vendedlogs/states/{state_machine_name(settings)}",
            retention=log_retention(settings),
            removal_policy=RemovalPolicy.DESTROY,
        )
        self.state_machine = sfn.StateMachine(
            self,
            "Jobs",
            state_machine_name=state_machine_name(settings),
            state_machine_type=sfn.StateMachineType.STANDARD,
            definition_body=sfn.DefinitionBody.from_string(text),
            definition_substitutions={
                f"{name.capitalize()}FunctionArn": functions[name].function_arn for name in called
            },
            # Execution data stays out of the logs: inputs carry scripts, webhook URLs and
            # pre-signed links.
            logs=sfn.LogOptions(
                destination=self.log_group, level=sfn.LogLevel.ALL, include_execution_data=False
            ),
            tracing_enabled=True,
        )
        # The definition calls unqualified ARNs: no `:*` version wildcard.
        allow(
            self.state_machine.role,
            "InvokeSteps",
            ["lambda:InvokeFunction"],
            [functions[name].function_arn for name in called],
        )
