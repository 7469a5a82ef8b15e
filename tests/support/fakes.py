"""In-memory stand-ins for the AWS clients the pipeline steps take as arguments, for unit tests of a
step's logic without the emulator.

Each fake is small on purpose, and honest where a step's logic depends on it:
- every call is checked against botocore's own service model (unknown or missing parameters, wrong
  types fail here as they would against AWS), and recorded in `calls`;
- errors are botocore `ClientError`s with the codes AWS returns (checked against moto 5.2.5 and the
  AWS API reference; tests/unit/pipeline/test_fakes.py runs the same calls against moto's in-process
  services so a drift shows up as a failing test).

The jobs table is not faked: the real `JobStore` runs on moto's in-process DynamoDB (its optimistic
lock and conditional writes are real behaviour), with the table the local stack creates
(`talkstack.pipeline.jobs_table`).
"""

from __future__ import annotations

import hashlib
import io
import json
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import cache
from pathlib import Path
from typing import Any

import botocore.session
from botocore.exceptions import ClientError, UnknownClientMethodError
from botocore.model import OperationModel, ServiceModel
from botocore.response import StreamingBody
from botocore.validate import validate_parameters

from talkstack.contract.record import JobRecord
from talkstack.contract.worker import WorkerTask, WorkerTaskBase, parse_worker_task
from talkstack.pipeline.jobs_table import create_table_request

REGION = "us-east-1"
ACCOUNT = "123456789012"


def create_jobs_table(ddb: Any, name: str) -> None:
    """The jobs table, from the package's one definition of its shape (as the local stack makes it)."""
    ddb.create_table(**create_table_request(name))


def client_error(operation: str, code: str, message: str, status: int = 400) -> ClientError:
    """A ClientError shaped as botocore parses an AWS error response."""
    return ClientError(
        {"Error": {"Code": code, "Message": message}, "ResponseMetadata": {"HTTPStatusCode": status}},
        operation,
    )


@cache
def _service(service: str) -> ServiceModel:
    return botocore.session.get_session().get_service_model(service)


def _operation(service: str, operation: str) -> OperationModel:
    return _service(service).operation_model(operation)


def _check_error(service: str, operation: str, code: str) -> None:
    """A fake only raises errors the operation is documented to raise (botocore's model lists them)."""
    shapes = _operation(service, operation).error_shapes
    codes = {shape.metadata.get("error", {}).get("code", shape.name) for shape in shapes}
    assert code in codes, f"{operation} does not raise {code}"


class _Recorder:
    """Checks each call against the real API's input shape and records it."""

    service: str

    def __init__(self) -> None:
        self.calls: list[tuple[str, dict[str, Any]]] = []

    def _call(self, operation: str, params: Mapping[str, Any]) -> None:
        model = _operation(self.service, operation)
        validate_parameters(dict(params), model.input_shape)  # ParamValidationError, as a client raises
        self.calls.append((operation, dict(params)))

    def called(self, operation: str) -> list[dict[str, Any]]:
        """The parameters of each call of `operation`, in order."""
        return [params for name, params in self.calls if name == operation]


# --- S3 ---------------------------------------------------------------------------------------------


@dataclass
class S3Object:
    body: bytes
    metadata: dict[str, str] = field(default_factory=dict)
    content_type: str = "binary/octet-stream"  # S3's default when a PUT names none
    last_modified: datetime = field(default_factory=lambda: datetime.now(UTC))

    @property
    def etag(self) -> str:
        return '"' + hashlib.md5(self.body).hexdigest() + '"'  # single-part ETag: quoted MD5


def _body_bytes(body: Any) -> bytes:
    if body is None:
        return b""
    if isinstance(body, str):
        return body.encode()
    if isinstance(body, bytes | bytearray):
        return bytes(body)
    return body.read()


class FakeS3(_Recorder):
    """Buckets of objects (bytes, user metadata, content type), as the steps use S3."""

    service = "s3"

    def __init__(self, buckets: Iterable[str]) -> None:
        super().__init__()
        self.objects: dict[tuple[str, str], S3Object] = {}
        self.buckets = set(buckets)
        self.denied: set[tuple[str, str]] = set()
        """Objects the caller's role may not touch (AccessDenied / a bare 403 on HEAD)."""
        self.presigned: dict[str, dict[str, Any]] = {}
        """What each URL handed out grants: ClientMethod, Bucket, Key (ContentType), ExpiresIn."""

    def keys(self, bucket: str, prefix: str = "") -> set[str]:
        return {key for b, key in self.objects if b == bucket and key.startswith(prefix)}

    def _bucket(self, operation: str, bucket: str) -> None:
        if bucket not in self.buckets:
            raise client_error(operation, "NoSuchBucket", "The specified bucket does not exist", 404)

    def _allowed(self, operation: str, bucket: str, key: str) -> None:
        if (bucket, key) in self.denied:
            # HEAD responses have no body, so botocore can only report the status as the code.
            code = "403" if operation == "HeadObject" else "AccessDenied"
            raise client_error(operation, code, "Access Denied" if code != "403" else "Forbidden", 403)

    def _object(self, operation: str, bucket: str, key: str) -> S3Object:
        self._allowed(operation, bucket, key)
        if operation == "HeadObject":
            # Also for a missing bucket: without a body there is no NoSuchBucket, only the status.
            if (bucket, key) not in self.objects:
                raise client_error(operation, "404", "Not Found", 404)
            return self.objects[(bucket, key)]
        self._bucket(operation, bucket)
        if (bucket, key) not in self.objects:
            raise client_error(operation, "NoSuchKey", "The specified key does not exist.", 404)
        return self.objects[(bucket, key)]

    def put_object(self, **params: Any) -> dict[str, Any]:
        self._call("PutObject", params)
        bucket, key = params["Bucket"], params["Key"]
        self._bucket("PutObject", bucket)
        self._allowed("PutObject", bucket, key)
        obj = S3Object(
            body=_body_bytes(params.get("Body")),
            # S3 stores user metadata keys in lower case (x-amz-meta-* headers are case-insensitive).
            metadata={k.lower(): v for k, v in params.get("Metadata", {}).items()},
            content_type=params.get("ContentType", "binary/octet-stream"),
        )
        self.objects[(bucket, key)] = obj
        return {"ETag": obj.etag}

    def _described(self, obj: S3Object) -> dict[str, Any]:
        return {
            "ContentLength": len(obj.body),
            "ContentType": obj.content_type,
            "ETag": obj.etag,
            "LastModified": obj.last_modified,
            "Metadata": dict(obj.metadata),
        }

    def get_object(self, **params: Any) -> dict[str, Any]:
        self._call("GetObject", params)
        obj = self._object("GetObject", params["Bucket"], params["Key"])
        return {**self._described(obj), "Body": StreamingBody(io.BytesIO(obj.body), len(obj.body))}

    def head_object(self, **params: Any) -> dict[str, Any]:
        self._call("HeadObject", params)
        return self._described(self._object("HeadObject", params["Bucket"], params["Key"]))

    def delete_object(self, **params: Any) -> dict[str, Any]:
        self._call("DeleteObject", params)
        bucket, key = params["Bucket"], params["Key"]
        self._bucket("DeleteObject", bucket)
        self._allowed("DeleteObject", bucket, key)
        self.objects.pop((bucket, key), None)  # deleting a missing key succeeds (204)
        return {}

    def copy_object(self, **params: Any) -> dict[str, Any]:
        source = params["CopySource"]
        if isinstance(source, Mapping):  # the client turns {"Bucket", "Key"} into "bucket/key" first
            source = f"{source['Bucket']}/{source['Key']}"
        self._call("CopyObject", {**params, "CopySource": source})
        src_bucket, _, src_key = source.lstrip("/").partition("/")
        original = self._object("CopyObject", src_bucket, src_key)
        self._bucket("CopyObject", params["Bucket"])
        self._allowed("CopyObject", params["Bucket"], params["Key"])
        replace = params.get("MetadataDirective", "COPY") == "REPLACE"
        copy = S3Object(
            body=original.body,
            metadata=(
                {k.lower(): v for k, v in params.get("Metadata", {}).items()}
                if replace
                else dict(original.metadata)
            ),
            content_type=params.get("ContentType", original.content_type)
            if replace
            else original.content_type,
        )
        self.objects[(params["Bucket"], params["Key"])] = copy
        return {"CopyObjectResult": {"ETag": copy.etag, "LastModified": copy.last_modified}}

    def list_objects_v2(self, **params: Any) -> dict[str, Any]:
        self._call("ListObjectsV2", params)
        bucket = params["Bucket"]
        self._bucket("ListObjectsV2", bucket)
        prefix, limit = params.get("Prefix", ""), params.get("MaxKeys", 1000)
        after = params.get("ContinuationToken") or params.get("StartAfter") or ""
        keys = sorted(k for k in self.keys(bucket, prefix) if k > after)
        page, more = keys[:limit], len(keys) > limit
        answer: dict[str, Any] = {
            "Name": bucket,
            "Prefix": prefix,
            "KeyCount": len(page),
            "IsTruncated": more,
        }
        if page:  # S3 leaves Contents out of an empty listing
            answer["Contents"] = [
                {
                    "Key": k,
                    "Size": len(self.objects[(bucket, k)].body),
                    "ETag": self.objects[(bucket, k)].etag,
                    "LastModified": self.objects[(bucket, k)].last_modified,
                }
                for k in page
            ]
        if more:
            answer["NextContinuationToken"] = page[-1]
        return answer

    def generate_presigned_url(
        self, ClientMethod: str, Params: Mapping[str, Any] | None = None, ExpiresIn: int = 3600
    ) -> str:
        """A URL that names what it grants (`presigned[url]`); nothing serves it (a test that needs a
        real signature uses a real client, as test_pipeline_logic.py does). Refuses an unknown method
        or parameter as a client does (test_fakes.py compares)."""
        params = dict(Params or {})
        name = "".join(part.title() for part in ClientMethod.split("_"))
        if name not in _service("s3").operation_names:
            raise UnknownClientMethodError(method_name=ClientMethod)  # as the client refuses it
        validate_parameters(params, _operation("s3", name).input_shape)
        grant = {"ClientMethod": ClientMethod, **params, "ExpiresIn": ExpiresIn}
        self.calls.append(("generate_presigned_url", grant))
        url = (
            f"https://{params['Bucket']}.s3.{REGION}.amazonaws.com/{params['Key']}"
            f"?X-Amz-Expires={ExpiresIn}&x-id={name}"  # a GET and a PUT of one key: two URLs
        )
        self.presigned[url] = grant
        return url

    def upload_file(
        self, Filename: str, Bucket: str, Key: str, ExtraArgs: Mapping[str, Any] | None = None, **_: Any
    ) -> None:
        self.put_object(Bucket=Bucket, Key=Key, Body=Path(Filename).read_bytes(), **dict(ExtraArgs or {}))

    def download_file(self, Bucket: str, Key: str, Filename: str, **_: Any) -> None:
        # s3transfer starts with a HeadObject: a missing object is a ClientError "404".
        self.head_object(Bucket=Bucket, Key=Key)
        Path(Filename).write_bytes(self.objects[(Bucket, Key)].body)


# --- Step Functions ----------------------------------------------------------------------------------


@dataclass
class Execution:
    arn: str
    name: str
    input: str
    status: str = "RUNNING"


class FakeStepFunctions(_Recorder):
    """Executions of known state machines, with AWS's idempotency rule for StartExecution: the same
    name and input as a running execution answers with that execution; otherwise the name is taken
    (ExecutionAlreadyExists), also once the execution has closed."""

    service = "stepfunctions"

    def __init__(self, state_machine_arns: Iterable[str]) -> None:
        super().__init__()
        self.state_machines = set(state_machine_arns)
        self.executions: dict[str, Execution] = {}
        self.closed_tokens: dict[str, str] = {}
        """Task tokens Step Functions no longer accepts, with the error it answers: TaskTimedOut (the
        state timed out or its heartbeat lapsed), InvalidToken, TaskDoesNotExist. moto accepts any
        token, so these codes are checked against botocore's model of each operation instead."""

    def execution_arn(self, state_machine_arn: str, name: str) -> str:
        return state_machine_arn.replace(":stateMachine:", ":execution:") + f":{name}"

    def _execution(self, operation: str, arn: str) -> Execution:
        if not arn.startswith("arn:aws:states:") or ":execution:" not in arn:
            raise client_error(operation, "InvalidArn", f"Invalid Arn: '{arn}'")
        if arn not in self.executions:
            raise client_error(operation, "ExecutionDoesNotExist", f"Execution Does Not Exist: '{arn}'")
        return self.executions[arn]

    def start_execution(self, **params: Any) -> dict[str, Any]:
        self._call("StartExecution", params)
        machine = params["stateMachineArn"]
        if machine not in self.state_machines:
            raise client_error(
                "StartExecution", "StateMachineDoesNotExist", f"State Machine Does Not Exist: '{machine}'"
            )
        arn = self.execution_arn(machine, params["name"])
        body = params.get("input", "{}")
        existing = self.executions.get(arn)
        if existing is not None and not (existing.status == "RUNNING" and existing.input == body):
            raise client_error(
                "StartExecution", "ExecutionAlreadyExists", f"Execution Already Exists: '{arn}'"
            )
        self.executions.setdefault(arn, Execution(arn, params["name"], body))
        return {"executionArn": arn, "startDate": datetime.now(UTC)}

    def describe_execution(self, **params: Any) -> dict[str, Any]:
        self._call("DescribeExecution", params)
        execution = self._execution("DescribeExecution", params["executionArn"])
        return {
            "executionArn": execution.arn,
            "name": execution.name,
            "status": execution.status,
            "input": execution.input,
        }

    def stop_execution(self, **params: Any) -> dict[str, Any]:
        self._call("StopExecution", params)
        execution = self._execution("StopExecution", params["executionArn"])
        if execution.status == "RUNNING":
            execution.status = "ABORTED"
        return {"stopDate": datetime.now(UTC)}

    def finish(self, name: str, status: str = "SUCCEEDED") -> None:
        """Close a running execution (what the state machine would do)."""
        (execution,) = [e for e in self.executions.values() if e.name == name]
        execution.status = status

    def _task(self, operation: str, params: Mapping[str, Any]) -> dict[str, Any]:
        self._call(operation, params)
        code = self.closed_tokens.get(params["taskToken"])
        if code is not None:
            _check_error("stepfunctions", operation, code)
            raise client_error(operation, code, "Task Timed Out" if code == "TaskTimedOut" else code)
        return {}

    def send_task_success(self, **params: Any) -> dict[str, Any]:
        return self._task("SendTaskSuccess", params)

    def send_task_failure(self, **params: Any) -> dict[str, Any]:
        return self._task("SendTaskFailure", params)

    def send_task_heartbeat(self, **params: Any) -> dict[str, Any]:
        return self._task("SendTaskHeartbeat", params)


# --- SQS ---------------------------------------------------------------------------------------------


class FakeSQS(_Recorder):
    """Queues by URL; `messages(url)` is what a consumer would receive (bodies decoded as JSON)."""

    service = "sqs"

    def __init__(self, queue_urls: Iterable[str]) -> None:
        super().__init__()
        self.queues: dict[str, list[dict[str, Any]]] = {url: [] for url in queue_urls}

    def send_message(self, **params: Any) -> dict[str, Any]:
        self._call("SendMessage", params)
        url = params["QueueUrl"]
        if url not in self.queues:
            raise client_error(
                "SendMessage",
                "AWS.SimpleQueueService.NonExistentQueue",
                "The specified queue does not exist.",
            )
        self.queues[url].append(params)
        digest = hashlib.md5(params["MessageBody"].encode()).hexdigest()
        return {"MessageId": f"m-{len(self.queues[url])}", "MD5OfMessageBody": digest}

    def messages(self, url: str) -> list[dict[str, Any]]:
        return [json.loads(m["MessageBody"]) for m in self.queues[url]]


# --- SNS ---------------------------------------------------------------------------------------------


class FakeSNS(_Recorder):
    """Topics by ARN; `messages(arn)` is what a subscriber would receive: the message (decoded as JSON)
    and its attributes as plain strings (what a subscription filter policy matches on)."""

    service = "sns"

    def __init__(self, topic_arns: Iterable[str]) -> None:
        super().__init__()
        self.topics: dict[str, list[dict[str, Any]]] = {arn: [] for arn in topic_arns}

    def publish(self, **params: Any) -> dict[str, Any]:
        self._call("Publish", params)
        arn = params.get("TopicArn")
        if arn not in self.topics:
            _check_error("sns", "Publish", "NotFound")
            raise client_error("Publish", "NotFound", "Topic does not exist", 404)
        self.topics[arn].append(params)
        return {"MessageId": str(uuid.uuid4())}

    def messages(self, arn: str) -> list[tuple[dict[str, Any], dict[str, str]]]:
        return [
            (
                json.loads(m["Message"]),
                {k: v["StringValue"] for k, v in m.get("MessageAttributes", {}).items()},
            )
            for m in self.topics[arn]
        ]


# --- not AWS, but the same kind of boundary ------------------------------------------------------


class FakeBackends:
    """The worker backends object (talkstack.pipeline.backends.Backends) as dispatch and cancel use
    it: `for_model(model)` → a backend with a `name` whose `submit(task)` starts a worker and returns
    its call id (`<name>:…`); `cancel(call_id)` → whether a backend call was cancelled. `fail` makes
    every cancel raise it. `name` is the backend every model runs on ("local" or "modal").

    A submitted task goes through its JSON form, as ModalBackend sends it and a worker parses it
    (talkstack.contract.worker.parse_worker_task): a task that does not survive that fails here."""

    def __init__(self, fail: Exception | None = None, name: str = "local") -> None:
        self.cancelled: list[str] = []
        self.fail = fail
        self.name = name
        self.models: list[str] = []
        """The model of each for_model() lookup."""
        self.submitted: list[WorkerTask] = []
        """Each task as the worker received it."""

    def for_model(self, model_id: str) -> FakeBackends:
        self.models.append(model_id)
        return self

    def submit(self, task: WorkerTaskBase) -> str:
        self.submitted.append(parse_worker_task(task.model_dump_json()))
        return f"{self.name}:call-{len(self.submitted)}"

    def cancel(self, call_id: str) -> bool:
        self.cancelled.append(call_id)
        if self.fail is not None:
            raise self.fail
        return call_id.startswith("modal:")


class EmittedEvents:
    """The steps' `emit(record, type)` callable (Services.emit publishes to SNS and notify); records
    the job, the event type and the record's status at the moment of the event."""

    def __init__(self) -> None:
        self.events: list[tuple[str, str, str]] = []

    def __call__(self, record: JobRecord, type: str) -> None:
        self.events.append((record.job_id, type, record.status))

    def types(self, job_id: str) -> list[str]:
        return [t for j, t, _ in self.events if j == job_id]
