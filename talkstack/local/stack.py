"""The local stack: moto's server on a fixed port, the resources of the deployed stack created from
the same names and the same ASL file, the real handlers behind the emulated Lambda service, and a
local worker pool behind the `local` worker backend.

    with LocalStack() as stack:          # or `talkstack up`
        stack.s3.upload_file(...)        # any S3 client works: boto3, the AWS CLI

One stack per process: moto's state and the Lambda patch are process-wide.
"""

from __future__ import annotations

import contextlib
import importlib.util
import io
import json
import logging
import socket
import sys
import threading
import time
import zipfile
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

import httpx

from talkstack.contract.events import JobEvent
from talkstack.contract.worker import MARKERS_PREFIX
from talkstack.errors import ErrorCode, TalkstackError
from talkstack.local.console import JobEnds
from talkstack.local.gateway import LocalGateway
from talkstack.local.moto_patches import (
    Handler,
    LambdaPatch,
    check_moto_version,
    install_execution_patches,
)
from talkstack.local.resources import (
    API_PORT_OFFSET,
    HANDLERS,
    LocalResources,
    definition_path,
    lambda_root,
)
from talkstack.local.workers import FaultPlan, LocalWorkerPool
from talkstack.pipeline import aws
from talkstack.pipeline.backends import register_local_sink
from talkstack.pipeline.config import get_config
from talkstack.pipeline.jobs_table import create_table_request, time_to_live_request
from talkstack.pipeline.retention import Retention
from talkstack.settings import environ, get_provenance_settings

log = logging.getLogger(__name__)


class StackError(RuntimeError):
    pass


def load_definition(substitutions: dict[str, str], path: Path | None = None) -> str:
    """The ASL text with `${Name}` placeholders replaced; refuses to leave any unresolved."""
    text = (path or definition_path()).read_text(encoding="utf-8")
    for name, value in substitutions.items():
        text = text.replace("${" + name + "}", value)
    if "${" in text:
        start = text.index("${")
        raise StackError(
            f"unresolved placeholder in the state machine: {text[start : text.index('}', start) + 1]}"
        )
    json.loads(text)  # fail here, not in CreateStateMachine, if the file is broken
    return text


def _port_free(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
            return True
        except OSError:
            return False


class HandlerLoader:
    """Imports aws/lambda/<name>.py on first use (as AWS does on a cold start)."""

    def __init__(self, resources: LocalResources, root: Path) -> None:
        self.resources, self.root = resources, root
        self._modules: dict[str, ModuleType] = {}
        self._lock = threading.Lock()
        self._by_function = {resources.function_name(name): name for name in HANDLERS}

    def __call__(self, function_name: str) -> Handler:
        name = self._by_function[function_name]
        with self._lock:
            module = self._modules.get(name)
            if module is None:
                module = self._import(name)
                self._modules[name] = module
        return module.handler

    def reset(self) -> None:
        """Forget imported handlers: the next invocation re-imports them (a cold start), so they
        pick up changed configuration."""
        with self._lock:
            self._modules.clear()

    def _import(self, name: str) -> ModuleType:
        path = self.root / f"{name}.py"
        spec = importlib.util.spec_from_file_location(f"talkstack_lambda_{name}", path)
        if spec is None or spec.loader is None:
            raise StackError(f"no handler module at {path}")
        module = importlib.util.module_from_spec(spec)
        sys.modules[spec.name] = module
        spec.loader.exec_module(module)
        return module


class LocalStack:
    def __init__(
        self,
        resources: LocalResources | None = None,
        *,
        workers: int = 2,
        faults: FaultPlan | None = None,
        settings: dict[str, str] | None = None,
        log_level: str = "WARNING",
        api: bool = True,
        on_job_end: Callable[[JobEvent], None] | None = None,
    ) -> None:
        self.resources = resources or LocalResources()
        self.workers = workers
        self.faults = faults or FaultPlan()
        self.settings = settings or {}
        """Extra TALKSTACK_* settings for the handlers, e.g. {"heartbeat_seconds": "3"}."""
        self.log_level = log_level
        self.api = api
        """Serve the REST API on `resources.api_url` (the local API Gateway)."""
        self.on_job_end = on_job_end
        """Called once per job that ends, with the terminal event its subscribers get."""
        self.gateway: LocalGateway | None = None
        self.pool: LocalWorkerPool | None = None
        self._server: Any = None
        self._lambda_patch: LambdaPatch | None = None
        self._loader: HandlerLoader | None = None

    # --- lifecycle ------------------------------------------------------------------------------

    def start(self) -> LocalStack:
        r = self.resources
        ports = [(r.port, ""), (r.api_port, f" (the REST API's: --port + {API_PORT_OFFSET})")]
        for port, role in ports if self.api else ports[:1]:
            if not _port_free(r.host, port):
                raise TalkstackError(
                    ErrorCode.PORT_IN_USE,
                    f"port {port} on {r.host}{role} is in use (another `talkstack up`?); start on another "
                    f"port with --port or TALKSTACK_LOCAL_PORT (the REST API takes that port + "
                    f"{API_PORT_OFFSET})",
                    port=port,
                )
        try:
            self._start()
        except BaseException:
            self.stop()  # never leave a half-started server or pool behind
            raise
        return self

    def _start(self) -> None:
        r = self.resources
        self._set_environment()
        check_moto_version()
        install_execution_patches()
        self._loader = HandlerLoader(r, lambda_root())
        observer = JobEnds(r, self.on_job_end) if self.on_job_end is not None else None
        self._lambda_patch = LambdaPatch(self._loader, observer=observer)
        self._lambda_patch.install()

        from moto.server import ThreadedMotoServer

        self._server = ThreadedMotoServer(ip_address=r.host, port=r.port, verbose=False)
        self._server.start()
        httpx.post(
            f"{r.endpoint}/moto-api/config", json={"stepfunctions": {"execute_state_machine": True}}
        ).raise_for_status()
        self.faults.owner_of = self._job_owner
        self.pool = LocalWorkerPool(self.workers, self.faults, dict(get_config().local_engines)).start()
        register_local_sink(self.pool)
        self._create_resources()
        if self.api:
            loader, name = self._loader, r.function_name("api")
            self.gateway = LocalGateway(lambda: loader(name), r.host, r.api_port, name).start()

    def stop(self) -> None:
        """Stop running executions, let in-flight handlers finish, then take everything down."""
        if self.gateway is not None:
            self.gateway.stop()
            self.gateway = None
        if self._server is not None:
            self._stop_executions()
        if self._lambda_patch is not None:
            self._lambda_patch.drain()
        register_local_sink(None)
        if self.pool is not None:
            self.pool.stop()
            self.pool = None
        if self._server is not None:
            self._server.stop()
            self._server = None
        if self._lambda_patch is not None:
            self._lambda_patch.uninstall()
            self._lambda_patch = None

    def _stop_executions(self) -> None:
        sfn = aws.client("stepfunctions")
        with contextlib.suppress(Exception):
            running = sfn.list_executions(
                stateMachineArn=self.resources.state_machine_arn, statusFilter="RUNNING", maxResults=1000
            )["executions"]
            for execution in running:
                sfn.stop_execution(executionArn=execution["executionArn"], cause="local stack stopping")

    def __enter__(self) -> LocalStack:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _set_environment(self) -> None:
        r = self.resources
        # The handlers run in this process and read their configuration from the environment, as in AWS.
        environ.export(r.client_env())
        environ.export(r.pipeline_env(**self.settings))
        get_provenance_settings.cache_clear()
        environ.export({"MOTO_PORT": str(r.port)})  # moto's state machine engine calls services here
        environ.export_defaults(
            {
                "POWERTOOLS_LOG_LEVEL": self.log_level,
                "POWERTOOLS_SERVICE_NAME": "talkstack",
                # Job metrics are EMF log lines for CloudWatch (talkstack.pipeline.metrics): noise locally.
                "POWERTOOLS_METRICS_DISABLED": "true",
            }
        )
        # Clients and config are cached per process: rebuild them for this endpoint and settings.
        from talkstack.pipeline.services import services

        aws.reset_clients()
        get_config.cache_clear()
        services.cache_clear()

    # --- resources ------------------------------------------------------------------------------

    def client(self, service: str) -> Any:
        return aws.client(service)

    @property
    def s3(self) -> Any:
        return aws.client("s3")

    def _create_resources(self) -> None:
        r = self.resources
        s3, lam, sfn = aws.client("s3"), aws.client("lambda"), aws.client("stepfunctions")
        for bucket in (r.input_bucket, r.output_bucket, r.work_bucket):
            s3.create_bucket(Bucket=bucket)
        # The same expiry rules as the CDK stack's, from the same settings (moto stores them; it
        # does not expire objects).
        retention = Retention.of(get_config())
        for role, bucket in (("input", r.input_bucket), ("work", r.work_bucket), ("output", r.output_bucket)):
            s3.put_bucket_lifecycle_configuration(
                Bucket=bucket, LifecycleConfiguration=retention.lifecycle_configuration(role)
            )
        ddb = aws.client("dynamodb")
        ddb.create_table(**create_table_request(r.jobs_table))
        ddb.update_time_to_live(**time_to_live_request(r.jobs_table))
        aws.client("sns").create_topic(Name=r.topic_name)
        aws.client("sqs").create_queue(QueueName=r.dlq_name)
        aws.client("iam").create_role(
            RoleName=f"{r.stack}-role",
            AssumeRolePolicyDocument=json.dumps({"Version": "2012-10-17", "Statement": []}),
        )
        env = environ.variables("TALKSTACK_")
        for name in HANDLERS:
            lam.create_function(
                FunctionName=r.function_name(name),
                Runtime="python3.11",
                Role=r.role_arn,
                Handler=f"{name}.handler",
                Code={"ZipFile": _placeholder_zip(name)},
                Timeout=900,
                MemorySize=512,
                Environment={"Variables": env},
            )
        config = get_config()
        _notify_lambda(
            s3, r.input_bucket, r.function_arn("ingest"), config.input_prefix, config.manifest_name
        )
        _notify_lambda(s3, r.work_bucket, r.function_arn("complete"), MARKERS_PREFIX)
        sfn.create_state_machine(
            name=r.state_machine_name,
            definition=load_definition(r.definition_substitutions()),
            roleArn=r.role_arn,
            type="STANDARD",
        )
        # A throwaway self-signed C2PA signer, where the CDK stack has the operator's (docs/safety.md).
        from talkstack.safety.credentials import throwaway_signer

        signer = throwaway_signer().model_dump_json()
        secrets = aws.client("secretsmanager")
        try:
            secrets.create_secret(Name=r.c2pa_secret, SecretString=signer)
        except secrets.exceptions.ResourceExistsException:
            secrets.put_secret_value(SecretId=r.c2pa_secret, SecretString=signer)

    def store_modal_token(self, token_id: str, token_secret: str) -> str:
        """Put a Modal token into the emulated Secrets Manager and point the pipeline at it, as the
        CDK stack does in AWS; returns the secret's ARN. Jobs on the modal backend then reach the real
        Modal (or whatever MODAL_SERVER_URL points at) from this machine."""
        secrets = aws.client("secretsmanager")
        name = f"{self.resources.stack}/modal-token"
        body = json.dumps({"token_id": token_id, "token_secret": token_secret})
        try:
            arn = secrets.create_secret(Name=name, SecretString=body)["ARN"]
        except secrets.exceptions.ResourceExistsException:
            arn = secrets.put_secret_value(SecretId=name, SecretString=body)["ARN"]
        self.configure(modal_token_secret=arn)
        return arn

    def create_api_key(self, tier: str = "free", name: str = "") -> str:
        """A new REST API key (printed once, stored hashed), as `talkstack keys create` makes."""
        from talkstack.api.keys import KeyStore

        return KeyStore(self.resources.jobs_table, aws.client("dynamodb")).create(tier, name).key

    def _job_owner(self, job_id: str) -> str | None:
        """The API key that submitted `job_id` (None for a drop or a direct start): FaultPlan's."""
        from talkstack.pipeline.store import JobStore

        record = JobStore(self.resources.jobs_table, aws.client("dynamodb")).get(job_id)
        return record.source.api_key_id if record is not None and record.source is not None else None

    def configure(self, **settings: str) -> None:
        """Change TALKSTACK_* settings of the running stack (handlers re-read their config)."""
        self.replace_settings({**self.settings, **settings})

    def replace_settings(self, settings: dict[str, str]) -> None:
        """Make `settings` the stack's whole set of overrides (earlier ones are dropped)."""
        from talkstack.pipeline.services import services

        environ.unset(f"TALKSTACK_{key.upper()}" for key in set(self.settings) - set(settings))
        self.settings = dict(settings)
        environ.export(self.resources.pipeline_env(**self.settings))
        get_provenance_settings.cache_clear()
        get_config.cache_clear()
        services.cache_clear()
        if self._loader is not None:
            self._loader.reset()  # handlers re-import (a cold start) and see the new config
        if self.pool is not None:
            self.pool.engines = dict(get_config().local_engines)

    # --- conveniences for tests, the CLI and the demo ---------------------------------------------

    def wait_for_execution(self, job_id: str, timeout_s: float = 120.0) -> dict[str, Any]:
        """Block until the job's execution ends; returns DescribeExecution."""
        sfn = aws.client("stepfunctions")
        arn = self.execution_arn(job_id)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            with contextlib.suppress(sfn.exceptions.ExecutionDoesNotExist):
                described = sfn.describe_execution(executionArn=arn)
                if described["status"] != "RUNNING":
                    return described
            time.sleep(0.1)
        raise TimeoutError(f"execution {job_id} still running after {timeout_s:.0f} s")

    def execution_arn(self, job_id: str) -> str:
        r = self.resources
        return f"arn:aws:states:{r.region}:{r.account}:execution:{r.state_machine_name}:{job_id}"


def _notify_lambda(s3: Any, bucket: str, function_arn: str, prefix: str, suffix: str | None = None) -> None:
    """ObjectCreated under `prefix` (and ending in `suffix`) → the function, as the CDK stack wires it."""
    rules = [{"Name": "prefix", "Value": prefix}] + ([{"Name": "suffix", "Value": suffix}] if suffix else [])
    s3.put_bucket_notification_configuration(
        Bucket=bucket,
        NotificationConfiguration={
            "LambdaFunctionConfigurations": [
                {
                    "LambdaFunctionArn": function_arn,
                    "Events": ["s3:ObjectCreated:*"],
                    "Filter": {"Key": {"FilterRules": rules}},
                }
            ]
        },
    )


def _placeholder_zip(name: str) -> bytes:
    # moto stores a code package per function; the code that runs is aws/lambda/<name>.py (see
    # HandlerLoader). The zip names the module so `GetFunction` shows something truthful.
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr(f"{name}.py", f"# local mode runs aws/lambda/{name}.py in process\n")
    return buffer.getvalue()
