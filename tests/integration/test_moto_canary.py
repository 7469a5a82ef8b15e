"""Canaries for the moto patches in talkstack.local.moto_patches. Each fails loudly if a moto upgrade
moves the internals the patch relies on, instead of letting local mode silently run different logic
than AWS. They use tiny state machines of their own, on the same emulator as the pipeline tests.
"""

from __future__ import annotations

import json
import threading
import time
import tomllib
from importlib.metadata import version
from pathlib import Path

import pytest

from talkstack.local.moto_patches import PINNED_MOTO

ROOT = Path(__file__).resolve().parents[2]


def test_installed_moto_is_the_pinned_version():
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert f"moto[server]=={PINNED_MOTO}" in pyproject["project"]["optional-dependencies"]["local"]
    assert version("moto") == PINNED_MOTO, "moto changed: re-verify talkstack/local/moto_patches.py"


def test_lambda_invoke_runs_the_real_handler(pipeline):
    lam = pipeline.stack.client("lambda")
    response = lam.invoke(
        FunctionName=pipeline.r.function_name("plan"), Payload=json.dumps({"job_id": "no-such-job"})
    )
    payload = json.loads(response["Payload"].read())
    # moto alone would need Docker, or echo the payload back; the real handler fails the job step.
    assert response.get("FunctionError") == "Unhandled"
    assert payload["errorType"] == "JobFailed"
    error = json.loads(payload["errorMessage"])
    assert (
        error["code"] == "GENERATION_FAILED" and error["step"] == "plan" and "no-such-job" in error["message"]
    )


def _state_machine(pipeline, name: str, definition: dict) -> str:
    sfn = pipeline.sfn
    arn = sfn.create_state_machine(name=name, definition=json.dumps(definition), roleArn=pipeline.r.role_arn)[
        "stateMachineArn"
    ]
    return arn


def _wait(pipeline, execution_arn: str, timeout_s: float = 30) -> dict:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        described = pipeline.sfn.describe_execution(executionArn=execution_arn)
        if described["status"] != "RUNNING":
            return described
        time.sleep(0.1)
    pytest.fail("canary execution did not finish")


def _callback_machine(queue: str, **task: object) -> dict:
    """One SQS callback task (its message carries the task token), plus `task` fields."""
    return {
        "StartAt": "Wait",
        "States": {
            "Wait": {
                "Type": "Task",
                "Resource": "arn:aws:states:::sqs:sendMessage.waitForTaskToken",
                "Parameters": {"QueueUrl": queue, "MessageBody": {"token.$": "$$.Task.Token"}},
                "End": True,
                **task,
            },
            "Caught": {"Type": "Pass", "End": True},
        },
    }


def test_callback_task_retry_gets_a_fresh_token(pipeline):
    sqs = pipeline.stack.client("sqs")
    queue = sqs.create_queue(QueueName="canary-callback")["QueueUrl"]
    definition = _callback_machine(
        queue,
        TimeoutSeconds=20,
        Retry=[{"ErrorEquals": ["Canary.Transient"], "IntervalSeconds": 1, "MaxAttempts": 1}],
    )
    arn = _state_machine(pipeline, "canary-fresh-token", definition)
    tokens: list[str] = []

    def answer() -> None:
        deadline = time.monotonic() + 20
        while len(tokens) < 2 and time.monotonic() < deadline:
            for message in sqs.receive_message(QueueUrl=queue, WaitTimeSeconds=1).get("Messages", []):
                token = json.loads(message["Body"])["token"]
                tokens.append(token)
                sqs.delete_message(QueueUrl=queue, ReceiptHandle=message["ReceiptHandle"])
                if len(tokens) == 1:
                    pipeline.sfn.send_task_failure(taskToken=token, error="Canary.Transient", cause="first")
                else:
                    pipeline.sfn.send_task_success(taskToken=token, output=json.dumps({"ok": True}))

    responder = threading.Thread(target=answer)
    responder.start()
    execution = pipeline.sfn.start_execution(stateMachineArn=arn, name="canary-fresh-token-1", input="{}")
    described = _wait(pipeline, execution["executionArn"])
    responder.join()
    # Unpatched moto reuses the first token and re-applies its failure: the execution fails at once.
    assert described["status"] == "SUCCEEDED", described
    assert len(tokens) == 2 and tokens[0] != tokens[1]


def test_heartbeat_timeout_is_reported_as_states_heartbeat_timeout(pipeline):
    sqs = pipeline.stack.client("sqs")
    queue = sqs.create_queue(QueueName="canary-heartbeat")["QueueUrl"]
    catch = [{"ErrorEquals": ["States.HeartbeatTimeout"], "ResultPath": "$.error", "Next": "Caught"}]
    definition = _callback_machine(queue, HeartbeatSeconds=1, TimeoutSeconds=10, Catch=catch)
    arn = _state_machine(pipeline, "canary-heartbeat", definition)
    execution = pipeline.sfn.start_execution(stateMachineArn=arn, name="canary-heartbeat-1", input="{}")
    described = _wait(pipeline, execution["executionArn"])
    # Unpatched moto reports States.Timeout, which this Catch does not match: the execution fails.
    assert described["status"] == "SUCCEEDED", described
    assert json.loads(described["output"])["error"]["Error"] == "States.HeartbeatTimeout"


def test_a_map_iteration_fails_the_map_with_its_states_error(pipeline):
    sqs = pipeline.stack.client("sqs")
    queue = sqs.create_queue(QueueName="canary-map-heartbeat")["QueueUrl"]
    inner = _callback_machine(queue, HeartbeatSeconds=1, TimeoutSeconds=10)
    del inner["States"]["Caught"]
    definition = {
        "StartAt": "Items",
        "States": {
            "Items": {
                "Type": "Map",
                "ItemsPath": "$.items",
                "ItemProcessor": {"ProcessorConfig": {"Mode": "INLINE"}, **inner},
                "Catch": [
                    {"ErrorEquals": ["States.HeartbeatTimeout"], "ResultPath": "$.error", "Next": "Caught"}
                ],
                "End": True,
            },
            "Caught": {"Type": "Pass", "End": True},
        },
    }
    arn = _state_machine(pipeline, "canary-map-heartbeat", definition)
    execution = pipeline.sfn.start_execution(
        stateMachineArn=arn, name="canary-map-heartbeat-1", input=json.dumps({"items": [1]})
    )
    described = _wait(pipeline, execution["executionArn"])
    # Unpatched moto fails the Map with States.Runtime (a `States.` name refused as a custom one).
    assert described["status"] == "SUCCEEDED", described
    assert json.loads(described["output"])["error"]["Error"] == "States.HeartbeatTimeout"


def test_stop_execution_aborts_a_waiting_callback_task(pipeline):
    sqs = pipeline.stack.client("sqs")
    queue = sqs.create_queue(QueueName="canary-stop")["QueueUrl"]
    catch = [{"ErrorEquals": ["States.ALL"], "ResultPath": "$.error", "Next": "Caught"}]
    definition = _callback_machine(queue, HeartbeatSeconds=5, TimeoutSeconds=20, Catch=catch)
    arn = _state_machine(pipeline, "canary-stop", definition)
    execution = pipeline.sfn.start_execution(stateMachineArn=arn, name="canary-stop-1", input="{}")
    assert sqs.receive_message(QueueUrl=queue, WaitTimeSeconds=5).get("Messages")  # the task is waiting
    pipeline.sfn.stop_execution(executionArn=execution["executionArn"], cause="canary")
    time.sleep(1)
    # Unpatched moto stays RUNNING until the heartbeat expires, then ends FAILED (or, as here, runs
    # the Catch path and SUCCEEDS): AWS aborts at once and runs nothing more.
    described = pipeline.sfn.describe_execution(executionArn=execution["executionArn"])
    assert described["status"] == "ABORTED", described
    time.sleep(5)
    assert pipeline.sfn.describe_execution(executionArn=execution["executionArn"])["status"] == "ABORTED"


def test_engine_lambda_clients_are_reused(pipeline):
    from moto.stepfunctions.parser.asl.component.state.exec.state_task import lambda_eval_utils

    first = lambda_eval_utils.boto_client_for(region="us-east-1", service="lambda", state_credentials=None)
    again = lambda_eval_utils.boto_client_for(region="us-east-1", service="lambda", state_credentials=None)
    # moto builds a new client per call; the speed patch hands back the cached one.
    assert first is again


def test_stop_as_a_task_starts_aborts_without_a_runtime_error(pipeline, monkeypatch, caplog):
    """StopExecution that lands between a Task state's start and its resource's evaluation (as a
    cancel can, racing the RecordFailure a stopped worker triggers): moto prunes the stopped frame's
    evaluation steps but still pops their results, raising `'dict' object has no attribute 'region'`
    (or another error) that it records as the task's States.Runtime failure and logs at ERROR. AWS
    aborts the execution at once and records no task failure."""
    from moto.stepfunctions.parser.asl.eval.environment import Environment

    name = "canary-stop-at-start-1"
    plan = pipeline.r.function_arn("plan")
    catch = [{"ErrorEquals": ["States.ALL"], "ResultPath": "$.error", "Next": "Caught"}]
    task = {"Type": "Task", "Resource": "arn:aws:states:::lambda:invoke", "Catch": catch, "End": True}
    task["Parameters"] = {"FunctionName": plan, "Payload": {"job_id": "canary"}}
    definition = {"StartAt": "Record", "States": {"Record": task, "Caught": {"Type": "Pass", "End": True}}}
    arn = _state_machine(pipeline, "canary-stop-at-start", definition)
    execution_arn = arn.replace(":stateMachine:", ":execution:") + f":{name}"
    original = Environment.open_frame

    def open_frame(self, *args, **kwargs):
        data = self.states.context_object.context_object_data
        if data["Execution"]["Name"] == name and data.get("State", {}).get("Name") == "Record":
            pipeline.sfn.stop_execution(executionArn=execution_arn, cause="canary")
        return original(self, *args, **kwargs)

    monkeypatch.setattr(Environment, "open_frame", open_frame)
    with caplog.at_level("ERROR", logger="moto"):
        pipeline.sfn.start_execution(stateMachineArn=arn, name=name, input=json.dumps({"a": {"b": 1}}))
        described = _wait(pipeline, execution_arn)
    assert described["status"] == "ABORTED", described
    events = pipeline.sfn.get_execution_history(executionArn=execution_arn)["events"]
    assert not [e for e in events if e["type"] in ("TaskFailed", "LambdaFunctionFailed")], events
    assert not [r for r in caplog.records if r.levelname == "ERROR"], [
        r.getMessage()[:300] for r in caplog.records
    ]
