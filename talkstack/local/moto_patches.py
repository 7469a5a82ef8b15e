"""Where moto (pinned, see pyproject `local` extra) differs from AWS in ways this pipeline depends on,
and the patches local mode applies. `tests/integration/test_moto_canary.py` proves each patch
still takes effect, so a moto upgrade that moves these internals fails loudly instead of silently
running different logic.

1. **Lambda invocation.** moto runs functions in Docker (none here) or, without Docker, only echoes
   the payload. The server runs in our process, so `LambdaFunction.invoke` is replaced by a call of
   the real handler: direct `Invoke`, S3 notifications and Step Functions `lambda:invoke` then run
   the same code as AWS. `InvocationType=Event` runs on a background pool, like AWS's async queue.
   A raised exception becomes AWS's error payload (`errorType` = class name, `errorMessage`), which
   Step Functions turns into the task's `Error` / `Cause` exactly as in AWS.
2. **A fresh task token per retry.** AWS issues a new `$$.Task.Token` for every attempt of a
   `.waitForTaskToken` task; moto reuses the first attempt's token, so the failure that triggered the
   retry is re-applied at once and no retry ever runs. The patch issues a new token before each
   attempt, which keeps the production definition's `Retry` blocks meaningful locally.
3. **The heartbeat timeout's name.** AWS fails a task whose heartbeats stop with
   `States.HeartbeatTimeout` (which a Retry or Catch can single out); moto reports every timeout as
   `States.Timeout`. The patch restores the specific name, so the definition can retry a silent
   worker without also retrying a step that ran past its TimeoutSeconds.
5. **StopExecution aborts.** AWS ends a stopped execution at once, as ABORTED, whatever state it is
   in. moto marks the program stopped but leaves a `.waitForTaskToken` task waiting for its token,
   and when that wait ends the task's error overwrites the stop, so the execution ends FAILED and
   its Catch path runs (a cancelled job would be reported failed). The patch wakes the execution's
   waiting callbacks on stop and keeps a stopped program stopped.
6. **A worker answering before dispatch returns** (see `after_this_invocation`): the local pool starts
   a task only once the dispatch invocation has answered, because moto mishandled a callback that
   came first (a worker failing within milliseconds was retried as if its failure were transient).
7. **A stop as a task starts.** moto evaluates a Task state in a frame that copies the execution's
   state; a StopExecution landing between the state's start and its resource's evaluation (a cancel
   racing the RecordFailure that its stopped worker triggers) leaves a stopped frame whose
   evaluation steps are skipped but whose results are still popped: `'dict' object has no attribute
   'region'`, recorded as the task's States.Runtime failure and logged at ERROR with the whole state
   machine's repr. AWS aborts the execution and records no task failure; the patch ends such a
   state quietly once its execution is stopped.
8. **A Map iteration failing with a `States.` error.** When a state inside a Map's item processor
   fails with one of AWS's own error names and nothing inside catches it (a scene's worker that
   stopped sending heartbeats: `States.HeartbeatTimeout` once its retries are spent), AWS fails the
   Map with that error, so the Map's Catch sees it. moto wraps the name as a custom error name,
   which refuses the `States.` prefix, and the Map fails with `States.Runtime` instead ("Custom
   Error Names MUST NOT begin with the prefix 'States.'"), so a composition's silent scene worker
   was reported as an internal error rather than a worker timeout. The patch keeps AWS's name.
4. **Speed only: reuse the engine's Lambda clients.** moto's state machine engine builds a new boto3
   client for every `lambda:invoke` task (10–20 ms each on this kind of machine); the patch caches
   them per region and credentials. Behaviour is unchanged; bench/pipeline_overhead.py shows the gain.
"""

from __future__ import annotations

import json
import logging
import threading
import time
import traceback
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

PINNED_MOTO = "5.2.5"

DEFERRED_START_S = 0.05
_invocation = threading.local()


def after_this_invocation(start: Callable[[], None]) -> None:
    """Run `start` once the Lambda invocation this thread is in has returned (at once outside one).

    6. **A worker answering before dispatch returns.** In AWS a worker may report (SendTaskFailure)
    while the dispatch Lambda that started it is still running, and Step Functions takes it. moto's
    `.waitForTaskToken` task can mishandle a callback that arrives before the invoke's answer: a
    worker that failed fatally within milliseconds (no face in the photo, an injected fault) was
    seen to be retried as if its failure were transient, about one run in a few. The local pool
    therefore starts a task only after the dispatch invocation has returned."""
    deferred = getattr(_invocation, "deferred", None)
    if deferred is None:
        start()
    else:
        deferred.append(start)


Handler = Callable[[dict[str, Any], Any], Any]
HandlerResolver = Callable[[str], Handler]
"""Function name → the handler callable (raises KeyError for an unknown function)."""
Observer = Callable[[str, Any], None]
"""(function name, event) of an invocation that has run."""

log = logging.getLogger(__name__)


@dataclass
class LocalLambdaContext:
    """The attributes of AWS's Lambda context object that handlers and powertools read."""

    function_name: str
    invoked_function_arn: str
    memory_limit_in_mb: int = 512
    function_version: str = "$LATEST"
    aws_request_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    log_group_name: str = ""
    log_stream_name: str = ""
    timeout_ms: int = 900_000

    def get_remaining_time_in_millis(self) -> int:
        return self.timeout_ms


def error_payload(exc: BaseException, request_id: str) -> dict[str, Any]:
    """AWS's payload for a function error."""
    return {
        "errorMessage": str(exc),
        "errorType": type(exc).__name__,
        "requestId": request_id,
        "stackTrace": traceback.format_tb(exc.__traceback__),
    }


class LambdaPatch:
    """Routes moto's Lambda invocations to in-process handlers. One per process (moto's models are
    module-level); `install` is idempotent and `uninstall` restores moto's method."""

    _lock = threading.Lock()
    _original: Any = None

    def __init__(
        self, resolve: HandlerResolver, async_workers: int = 8, observer: Observer | None = None
    ) -> None:
        self.resolve = resolve
        self.observer = observer
        """Told of every invocation once it has answered (`talkstack up` prints the jobs that end)."""
        self.async_pool = ThreadPoolExecutor(async_workers, thread_name_prefix="lambda-async")
        self._pending = 0
        self._idle = threading.Condition()

    def run(self, function_name: str, function_arn: str, event: Any) -> tuple[str, bool]:
        """(JSON payload, errored) of one invocation."""
        context = LocalLambdaContext(function_name=function_name, invoked_function_arn=function_arn)
        _invocation.deferred = deferred = []
        try:
            result = self.resolve(function_name)(event, context)
            answer = json.dumps(result), False
        except Exception as exc:
            # JobFailed is an expected outcome (bad input); anything else deserves attention.
            level = logging.INFO if type(exc).__name__ == "JobFailed" else logging.WARNING
            log.log(level, "λ %s raised %s: %s", function_name, type(exc).__name__, exc)
            answer = json.dumps(error_payload(exc, context.aws_request_id)), True
        finally:
            _invocation.deferred = None
            for start in deferred:  # just after moto has the invocation's answer
                threading.Timer(DEFERRED_START_S, start).start()
        if self.observer is not None:
            try:
                self.observer(function_name, event)
            except Exception:  # an observer's failure is never the invocation's
                log.warning("observer of λ %s failed", function_name, exc_info=True)
        return answer

    def _run_async(self, function_name: str, function_arn: str, event: Any) -> None:
        try:
            self.run(function_name, function_arn, event)  # errors are logged by run(), as AWS logs them
        finally:
            with self._idle:
                self._pending -= 1
                self._idle.notify_all()

    def submit_async(self, function_name: str, function_arn: str, event: Any) -> None:
        with self._idle:
            self._pending += 1
        self.async_pool.submit(self._run_async, function_name, function_arn, event)

    def drain(self, timeout_s: float = 10.0) -> bool:
        """Wait for async invocations in flight to finish (before the server goes away)."""
        deadline = time.monotonic() + timeout_s
        with self._idle:
            while self._pending:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._idle.wait(remaining)
        return True

    def install(self) -> None:
        from moto.awslambda.models import LambdaFunction

        patch = self

        def invoke(fn: Any, body: str, request_headers: Any, response_headers: Any) -> str:
            event = json.loads(body) if body else {}
            headers = {str(k).lower(): v for k, v in dict(request_headers or {}).items()}
            if headers.get("x-amz-invocation-type") == "Event":
                patch.submit_async(fn.function_name, fn.function_arn, event)
                return ""
            payload, errored = patch.run(fn.function_name, fn.function_arn, event)
            if errored:
                response_headers["x-amz-function-error"] = "Unhandled"
            return payload

        with LambdaPatch._lock:
            if LambdaPatch._original is None:
                LambdaPatch._original = LambdaFunction.invoke
            LambdaFunction.invoke = invoke  # type: ignore[method-assign]

    def uninstall(self) -> None:
        from moto.awslambda.models import LambdaFunction

        with LambdaPatch._lock:
            if LambdaPatch._original is not None:
                LambdaFunction.invoke = LambdaPatch._original  # type: ignore[method-assign]
                LambdaPatch._original = None
        self.async_pool.shutdown(wait=False, cancel_futures=True)


_token_patch_installed = False


def install_fresh_token_per_retry() -> None:
    """Issue a new task token before every attempt of a `.waitForTaskToken` task (AWS behaviour)."""
    global _token_patch_installed
    from moto.stepfunctions.parser.asl.component.state.exec.state_task.service.resource import (
        ResourceCondition,
    )
    from moto.stepfunctions.parser.asl.component.state.exec.state_task.service.state_task_service_callback import (  # noqa: E501
        StateTaskServiceCallback,
    )

    if _token_patch_installed:
        return
    original = StateTaskServiceCallback._evaluate_with_timeout

    def _evaluate_with_timeout(self: Any, env: Any) -> None:
        if self.resource.condition == ResourceCondition.WaitForTaskToken:
            token = env.states.context_object.update_task_token()
            env.callback_pool_manager.add(token)
        return original(self, env)

    StateTaskServiceCallback._evaluate_with_timeout = _evaluate_with_timeout  # type: ignore[method-assign]
    _token_patch_installed = True


_heartbeat_patch_installed = False


def install_heartbeat_timeout_name() -> None:
    """Report a heartbeat timeout as `States.HeartbeatTimeout`, as AWS does."""
    global _heartbeat_patch_installed
    from moto.stepfunctions.parser.api import HistoryEventType, TaskTimedOutEventDetails
    from moto.stepfunctions.parser.asl.component.common.error_name.failure_event import FailureEvent
    from moto.stepfunctions.parser.asl.component.common.error_name.states_error_name import StatesErrorName
    from moto.stepfunctions.parser.asl.component.common.error_name.states_error_name_type import (
        StatesErrorNameType,
    )
    from moto.stepfunctions.parser.asl.component.state.exec.state_task.service.state_task_service_callback import (  # noqa: E501
        StateTaskServiceCallback,
    )
    from moto.stepfunctions.parser.asl.eval.callback.callback import HeartbeatTimeoutError
    from moto.stepfunctions.parser.asl.eval.event.event_detail import EventDetails

    if _heartbeat_patch_installed:
        return
    original = StateTaskServiceCallback._from_error

    def _from_error(self: Any, env: Any, ex: Exception) -> Any:
        if isinstance(ex, HeartbeatTimeoutError):
            name = StatesErrorNameType.StatesHeartbeatTimeout
            return FailureEvent(
                env=env,
                error_name=StatesErrorName(typ=name),
                event_type=HistoryEventType.TaskTimedOut,
                event_details=EventDetails(
                    taskTimedOutEventDetails=TaskTimedOutEventDetails(
                        resourceType=self._get_sfn_resource_type(),
                        resource=self._get_sfn_resource(),
                        error=name.to_name(),
                    )
                ),
            )
        return original(self, env, ex)

    StateTaskServiceCallback._from_error = _from_error  # type: ignore[method-assign]
    _heartbeat_patch_installed = True


_client_cache_installed = False


def install_lambda_client_cache() -> None:
    global _client_cache_installed
    from moto.stepfunctions.parser.asl.component.state.exec.state_task import lambda_eval_utils

    if _client_cache_installed:
        return
    original = lambda_eval_utils.boto_client_for
    cache: dict[tuple[str, str, str], Any] = {}
    lock = threading.Lock()

    def boto_client_for(region: str, service: str, state_credentials: Any = None) -> Any:
        key = (region, service, repr(state_credentials))
        with lock:
            if key not in cache:
                cache[key] = original(region=region, service=service, state_credentials=state_credentials)
            return cache[key]

    lambda_eval_utils.boto_client_for = boto_client_for
    _client_cache_installed = True


_stop_patch_installed = False


def install_stop_aborts() -> None:
    """StopExecution ends the execution at once as ABORTED, as in AWS (patch 5)."""
    global _stop_patch_installed
    from moto.stepfunctions.parser.asl.eval.environment import Environment
    from moto.stepfunctions.parser.asl.eval.program_state import ProgramStopped

    if _stop_patch_installed:
        return
    original_stop, original_error = Environment.set_stop, Environment.set_error

    def set_stop(self: Any, stop_date: Any, cause: Any, error: Any) -> None:
        original_stop(self, stop_date, cause, error)
        # The pool belongs to this execution (frames share it): wake its waiting task tokens.
        for endpoint in list(self.callback_pool_manager._pool.values()):
            endpoint.interrupt_all()

    def set_error(self: Any, error: Any) -> None:
        if isinstance(self._program_state, ProgramStopped):
            return  # an interrupted wait's error must not turn ABORTED into FAILED
        original_error(self, error)

    Environment.set_stop = set_stop  # type: ignore[method-assign]
    Environment.set_error = set_error  # type: ignore[method-assign]
    _stop_patch_installed = True


_stopped_state_patch_installed = False


def install_stopped_state_ends_quietly() -> None:
    """A state whose execution was stopped while it ran ends without a failure of its own (patch 7)."""
    global _stopped_state_patch_installed
    from moto.stepfunctions.parser.asl.component.state.exec.execute_state import ExecutionState
    from moto.stepfunctions.parser.asl.component.state.exec.state_task.service.state_task_service_callback import (  # noqa: E501
        StateTaskServiceCallback,
    )
    from moto.stepfunctions.parser.asl.eval.program_state import ProgramStopped

    if _stopped_state_patch_installed:
        return

    def quiet_when_stopped(original: Callable[[Any, Any], None]) -> Callable[[Any, Any], None]:
        def _evaluate_with_timeout(self: Any, env: Any) -> None:
            try:
                original(self, env)
            except Exception:
                # Stopped: what the pruned evaluation raised is an artefact, not the task's failure;
                # the state's caller sees the program is no longer running and ends the state there.
                if isinstance(env.program_state(), ProgramStopped):
                    return
                raise

        return _evaluate_with_timeout

    # Patch 2 gives callback tasks their own method (wrapping the inherited one): wrap each class
    # that has its own, whichever order the patches are installed in.
    for cls in (ExecutionState, StateTaskServiceCallback):
        if "_evaluate_with_timeout" in vars(cls):
            cls._evaluate_with_timeout = quiet_when_stopped(vars(cls)["_evaluate_with_timeout"])  # type: ignore[method-assign]
    _stopped_state_patch_installed = True


_map_error_patch_installed = False


def install_map_iteration_states_errors() -> None:
    """A Map iteration's `States.` error reaches the Map under its own name (patch 8)."""
    global _map_error_patch_installed
    from moto.stepfunctions.parser.asl.component.common.error_name.custom_error_name import CustomErrorName
    from moto.stepfunctions.parser.asl.component.common.error_name.states_error_name import StatesErrorName
    from moto.stepfunctions.parser.asl.component.state.exec.state_map.iteration import iteration_worker

    if _map_error_patch_installed:
        return

    def error_name(error_name: Any) -> Any:
        if isinstance(error_name, str) and error_name.startswith("States."):
            try:
                return StatesErrorName.from_name(error_name)
            except ValueError:  # not one of AWS's names: moto's own refusal, as before
                pass
        return CustomErrorName(error_name=error_name)

    iteration_worker.CustomErrorName = error_name  # type: ignore[attr-defined]
    _map_error_patch_installed = True


def install_execution_patches() -> None:
    """The Step Functions patches (2, 3, 4, 5, 7 and 8); idempotent."""
    install_fresh_token_per_retry()
    install_heartbeat_timeout_name()
    install_lambda_client_cache()
    install_stop_aborts()
    install_stopped_state_ends_quietly()
    install_map_iteration_states_errors()


def check_moto_version() -> str:
    """The installed moto version; a warning is logged when it is not the pinned one."""
    from importlib.metadata import version

    installed = version("moto")
    if installed != PINNED_MOTO:
        log.warning(
            "moto %s is installed; talkstack.local was verified against %s (run the canary tests)",
            installed,
            PINNED_MOTO,
        )
    return installed
