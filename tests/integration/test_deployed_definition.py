"""The state machine CDK would deploy, run on the local stack: the DefinitionString and
DefinitionSubstitutions taken from the synthesized template, the function ARNs mapped to the local
functions (the only change), created as a second state machine beside the local one and driven to
a finished job, and to a recorded failure. Proves the deployed definition and the local one are the
same program, not two copies that happen to agree."""

from __future__ import annotations

import json
import uuid

import pytest

from talkstack.local.stack import load_definition
from tests.support.cdk_synth import synth

pytestmark = pytest.mark.slow


def deployed_definition(local_function_arn) -> str:
    """Resolve the template's substitutions the way CloudFormation would, with local ARNs."""
    s = synth()
    (sm,) = s.resources("AWS::StepFunctions::StateMachine").values()
    handlers = {
        lid: r["Properties"]["Handler"].split(".")[0]
        for lid, r in s.resources("AWS::Lambda::Function").items()
    }
    text = sm["Properties"]["DefinitionString"]
    for name, value in sm["Properties"]["DefinitionSubstitutions"].items():
        logical_id, attribute = value["Fn::GetAtt"]
        assert attribute == "Arn"
        text = text.replace("${" + name + "}", local_function_arn(handlers[logical_id]))
    assert "${" not in text
    return text


@pytest.fixture(scope="module")
def deployed_machine(pipeline):
    r = pipeline.r
    definition = deployed_definition(r.function_arn)
    # Byte for byte what local mode loads from aws/stepfunctions: one program.
    assert definition == load_definition(r.definition_substitutions())
    arn = pipeline.sfn.create_state_machine(
        name=f"{r.state_machine_name}-deployed", definition=definition, roleArn=r.role_arn, type="STANDARD"
    )["stateMachineArn"]
    yield arn
    pipeline.sfn.delete_state_machine(stateMachineArn=arn)


def finished(pipeline, job_id: str, execution_arn: str, timeout_s: float = 120):
    """The job's final record and its execution once both have ended (the Notify state included)."""
    record = pipeline.wait_until(
        lambda: (r := pipeline.store.get(job_id)) is not None and r.status in ("completed", "failed") and r,
        timeout_s=timeout_s,
    )
    execution = pipeline.wait_until(
        lambda: (
            (e := pipeline.sfn.describe_execution(executionArn=execution_arn))["status"] != "RUNNING" and e
        ),
        timeout_s=60,
    )
    return record, execution


def test_deployed_definition_completes_a_voice_then_avatar_job(pipeline, deployed_machine, media):
    name = f"deployed-{uuid.uuid4().hex[:8]}"
    key = f"uploads/{name}/portrait.png"
    pipeline.s3.upload_file(str(media["portrait"]), pipeline.r.input_bucket, key)
    request = {
        "task": "avatar",
        "job_id": name,
        "inputs": {"image": f"s3://{pipeline.r.input_bucket}/{key}", "text": "Deployed and local are one."},
    }
    arn = pipeline.sfn.start_execution(
        stateMachineArn=deployed_machine, name=name, input=json.dumps(request)
    )["executionArn"]
    record, execution = finished(pipeline, name, arn)
    assert record.status == "completed", record.error
    assert [step.name for step in record.steps] == ["moderate", "voice", "avatar", "finalize"]
    assert record.result is not None and (record.result.duration_s or 0) > 1
    keys = pipeline.keys(pipeline.r.output_bucket, f"{name}/")
    assert {f"{name}/video.mp4", f"{name}/thumbnail.jpg", f"{name}/result.json"} <= set(keys)
    assert execution["status"] == "SUCCEEDED"
    assert execution["stateMachineArn"] == deployed_machine
    assert len(pipeline.sns.for_job(name, "job.completed")) == 1


def test_deployed_definition_records_a_failure_through_its_catch_path(pipeline, deployed_machine):
    name = f"deployed-{uuid.uuid4().hex[:8]}"
    request = {
        "task": "avatar",
        "job_id": name,
        "inputs": {
            "image": f"s3://{pipeline.r.input_bucket}/uploads/{name}/missing.png",
            "text": "There is no photo.",
        },
    }
    arn = pipeline.sfn.start_execution(
        stateMachineArn=deployed_machine, name=name, input=json.dumps(request)
    )["executionArn"]
    record, execution = finished(pipeline, name, arn, timeout_s=60)
    assert record.status == "failed" and record.error is not None
    assert record.error.code == "INPUT_NOT_FOUND"
    assert execution["status"] == "FAILED"
    assert len(pipeline.sns.for_job(name, "job.failed")) == 1
