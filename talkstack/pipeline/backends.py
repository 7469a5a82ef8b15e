"""Worker backends: where the dispatch Lambda sends a task. Each takes a WorkerTask and returns at
once with a call id; the worker reports back through markers only.

`local` hands the task to the worker pool of the running local stack (`talkstack up`, tests,
`make demo`). `modal` looks the model's deployed class up by name (`modal.Cls.from_name`) and
`.spawn()`s the task on it; the Modal token comes from Secrets Manager (PipelineConfig.
modal_token_secret), never from code. Which backend serves a model is configuration
(`PipelineConfig.backend_for`).
"""

from __future__ import annotations

import json
import logging
import threading
from typing import Any, ClassVar, Protocol

from pydantic import BaseModel, SecretStr, ValidationError
from tenacity import retry, retry_if_exception, stop_after_attempt, wait_random_exponential

from talkstack.contract.worker import WorkerTask
from talkstack.engines.registry import modal_parameters, modal_target
from talkstack.errors import ErrorCode, TalkstackError
from talkstack.pipeline.aws import secrets_provider

log = logging.getLogger(__name__)
TOKEN_CACHE_SECONDS = 300
MODAL_TOKEN_PLACEHOLDER = "replace-me"
"""The token id the CDK stack's secret holds until the deployer stores a real token."""
NO_TOKEN_HINT = (
    'store {"token_id": "ak-…", "token_secret": "as-…"} in AWS Secrets Manager and set '
    "TALKSTACK_MODAL_TOKEN_SECRET to its name or ARN (docs/gpu-workers.md)"
)


class WorkerBackend(Protocol):
    name: str

    def submit(self, task: WorkerTask) -> str:
        """Start `task` somewhere; returns a worker/call id for the job record."""
        ...


class TaskSink(Protocol):
    def submit(self, task: WorkerTask) -> str: ...


_local_sink: TaskSink | None = None


def register_local_sink(sink: TaskSink | None) -> None:
    """Called by the local runtime when its worker pool starts (None when it stops)."""
    global _local_sink
    _local_sink = sink


class LocalBackend:
    name = "local"

    def submit(self, task: WorkerTask) -> str:
        if _local_sink is None:
            raise TalkstackError(
                ErrorCode.MODEL_UNAVAILABLE,
                "the local worker backend only runs inside the local stack (talkstack up); "
                "use the modal backend for deployed stacks (TALKSTACK_WORKER_BACKEND=modal)",
            )
        return _local_sink.submit(task)


# ---------------------------------------------------------------------------------------------
# Modal
# ---------------------------------------------------------------------------------------------


class ModalToken(BaseModel):
    token_id: SecretStr
    token_secret: SecretStr


def read_modal_token(secret_id: str | None, secrets_client: Any) -> ModalToken:
    """The Modal token from Secrets Manager (cached for a few minutes by powertools, so a rotated
    token is picked up without a redeploy). MODEL_UNAVAILABLE, with what to do, when it is missing."""
    from aws_lambda_powertools.utilities.parameters.exceptions import (
        GetParameterError,
        TransformParameterError,
    )

    if not secret_id:
        raise TalkstackError(ErrorCode.MODEL_UNAVAILABLE, f"no Modal token is configured: {NO_TOKEN_HINT}")
    try:
        value = secrets_provider(secrets_client).get(secret_id, max_age=TOKEN_CACHE_SECONDS, transform="json")
        token = ModalToken.model_validate(value)
    except (GetParameterError, TransformParameterError, ValidationError) as exc:
        raise TalkstackError(
            ErrorCode.MODEL_UNAVAILABLE,
            f"the Modal token secret {secret_id!r} could not be used ({type(exc).__name__}): {NO_TOKEN_HINT}",
        ) from exc
    if token.token_id.get_secret_value() == MODAL_TOKEN_PLACEHOLDER:
        # Said here rather than as Modal's refusal: the fix is in the deployer's hands, not Modal's.
        raise TalkstackError(
            ErrorCode.MODEL_UNAVAILABLE,
            f"the Modal token secret {secret_id!r} still holds the stack's placeholder: put your Modal "
            'token in it as {"token_id": "ak-…", "token_secret": "as-…"} (docs/deploy.md)',
        )
    return token


def _transient_modal(exc: BaseException) -> bool:
    import modal.exception as mx

    return isinstance(
        exc, mx.ConnectionError | mx.InternalError | mx.ServiceError | mx.ResourceExhaustedError
    )


class ModalBackend:
    """`.spawn()` on the deployed class of the task's model. Nothing is awaited: the call id goes to
    the job record and the worker answers through its markers (Modal's own results expire)."""

    name = "modal"
    _clients: ClassVar[dict[str, Any]] = {}  # server|token id → opened modal.Client, per container
    _lock = threading.Lock()

    def __init__(self, token: ModalToken, environment: str | None = None) -> None:
        self.token, self.environment = token, environment

    def _client(self) -> Any:
        import modal

        key = self.token.token_id.get_secret_value()
        with self._lock:
            if key not in self._clients:
                self._clients[key] = modal.Client.from_credentials(
                    key, self.token.token_secret.get_secret_value()
                )
            return self._clients[key]

    @retry(
        retry=retry_if_exception(_transient_modal),
        stop=stop_after_attempt(3),
        wait=wait_random_exponential(multiplier=0.5, max=5),
        reraise=True,
    )
    def _spawn(
        self, app_name: str, class_name: str, parameters: dict[str, Any], payload: dict[str, Any]
    ) -> str:
        import modal

        worker_cls = modal.Cls.from_name(
            app_name, class_name, environment_name=self.environment, client=self._client()
        )
        call = worker_cls(**parameters).run.spawn(payload)
        return str(call.object_id)

    def call(self, app_name: str, class_name: str, method: str, *args: Any, timeout_s: float) -> Any:
        """Run one method of a deployed class and wait for its answer, at most `timeout_s` (a spawn
        then a bounded `get`, so a cold or stuck container cannot hold the caller past its own
        deadline; the call is cancelled when the wait runs out). Modal's errors and the builtin
        TimeoutError propagate: the caller decides what an unanswered call means."""
        import modal

        worker_cls = modal.Cls.from_name(
            app_name, class_name, environment_name=self.environment, client=self._client()
        )
        call = getattr(worker_cls(), method).spawn(*args)
        try:
            return call.get(timeout=timeout_s)
        except TimeoutError:
            call.cancel()
            raise

    def cancel(self, call_id: str) -> None:
        """Stop a spawned call (`fc-…`): Modal terminates its input without retrying it."""
        import modal

        modal.FunctionCall.from_id(call_id, client=self._client()).cancel()
        log.info("cancelled modal call %s", call_id)

    def submit(self, task: WorkerTask) -> str:
        import modal.exception as mx

        app_name, class_name = modal_target(task.model)
        where = f"{app_name}/{class_name}" + (
            f" in environment {self.environment}" if self.environment else ""
        )
        try:
            parameters = modal_parameters(task.model, task.options)
            call_id = self._spawn(app_name, class_name, parameters, json.loads(task.model_dump_json()))
        except mx.NotFoundError as exc:
            family = app_name.removeprefix("talkstack-")
            raise TalkstackError(
                ErrorCode.MODEL_UNAVAILABLE,
                f"{task.model}: Modal has no deployed {where}; run `modal deploy -m modal_workers.{family}`",
            ) from exc
        except (mx.AuthError, mx.PermissionDeniedError) as exc:
            raise TalkstackError(
                ErrorCode.MODEL_UNAVAILABLE, f"{task.model}: Modal refused the configured token ({exc})"
            ) from exc
        except mx.Error as exc:
            raise TalkstackError(
                ErrorCode.MODEL_UNAVAILABLE, f"{task.model}: could not start {where} on Modal: {exc}"
            ) from exc
        log.info("spawned %s on modal %s: %s", task.attempt_id, where, call_id)
        return f"modal:{call_id}"


class Backends:
    """The backend for each model, built lazily (a stack that never runs a Modal model never reads
    the token)."""

    def __init__(self, config: Any, secrets_client_factory: Any) -> None:
        self.config, self._secrets = config, secrets_client_factory
        self._local = LocalBackend()

    def cancel(self, call_id: str) -> bool:
        """Stop the worker call a step record names (`modal:fc-…`). Local workers need nothing more:
        they poll the job's cancel flag (WorkerTask.cancel_url), as any worker does. True if a
        backend call was cancelled."""
        backend, _, native = call_id.partition(":")
        if backend != "modal" or not native:
            return False
        token = read_modal_token(self.config.modal_token_secret, self._secrets())
        ModalBackend(token, self.config.modal_environment).cancel(native)
        return True

    def for_model(self, model_id: str) -> WorkerBackend:
        name = self.config.backend_for(model_id)
        if name == "local":
            return self._local
        token = read_modal_token(self.config.modal_token_secret, self._secrets())
        return ModalBackend(token, self.config.modal_environment)
