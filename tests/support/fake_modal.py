"""A fake Modal control plane: the network boundary of the `modal` worker backend, faked.

Modal's real client library (`modal.Client`, `modal.Cls.from_name(...)`, `.spawn`) talks gRPC to
MODAL_SERVER_URL. This server answers the four calls a spawn makes (ClassGet, FunctionGet,
FunctionBindParams, FunctionMap) from a table of "deployed" classes, checks the token the client
sends, and hands each spawned input to a Python callable standing in for the Modal container (run
on a thread, like a container picking up an input). Everything on our side of the wire is real.

A "deployed" class is the real one: `deploy(app, cls)` imports modal_workers/<family>.py and serves
what `modal deploy` would register for that class (tests/support/modal_introspect.real_class): its
parameter schema and its methods, never a schema the test chose. So Modal's client checks and
encodes the spawn's parameters against the class as written, and the fake builds each bound
instance with Modal's own container code. Where the real service would accept parameters the
container then cannot take (a class without `modal.parameter()`s gets pickled keyword arguments;
the container fails at start, the call never answers), the fake refuses at FunctionBindParams
instead, so a test fails at the call rather than waiting on a worker that never reports.
"""

from __future__ import annotations

import asyncio
import itertools
import pickle
import socket
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import grpclib.const
import grpclib.exceptions
import grpclib.server
import modal_proto.api_grpc as api_grpc
from google.protobuf import empty_pb2
from modal_proto import api_pb2

from tests.support.modal_introspect import RealClass, container_instance, parameter_values, real_class

Container = Callable[..., Any]


@dataclass
class Spawned:
    app: str
    cls: str
    method: str
    environment: str
    payload: dict[str, Any]
    call_id: str
    parameters: dict[str, Any]
    """The class parameters of the instance the container built (its `modal.parameter()`s)."""


@dataclass
class _Deployed:
    real: RealClass
    environment: str
    container: Container | None

    @property
    def app(self) -> str:
        return self.real.app

    @property
    def cls(self) -> str:
        return self.real.name


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _metadata(real: RealClass) -> api_pb2.FunctionHandleMetadata:
    """The class service function's handle as the server returns it for a deployed class."""
    formats = [api_pb2.DATA_FORMAT_PICKLE, api_pb2.DATA_FORMAT_CBOR]
    methods = {
        method: api_pb2.FunctionHandleMetadata(
            function_name=f"{real.name}.{method}",
            function_type=api_pb2.Function.FUNCTION_TYPE_FUNCTION,
            is_method=True,
            use_method_name=method,
            supported_input_formats=formats,
        )
        for method in real.methods
    }
    return api_pb2.FunctionHandleMetadata(
        function_name=f"{real.name}.*",
        function_type=api_pb2.Function.FUNCTION_TYPE_FUNCTION,
        class_parameter_info=real.parameters,
        method_handle_metadata=methods,
        supported_input_formats=formats,
    )


def _refused(message: str) -> grpclib.exceptions.GRPCError:
    # INVALID_ARGUMENT: Modal's client raises it as modal.exception.InvalidError.
    return grpclib.exceptions.GRPCError(grpclib.const.Status.INVALID_ARGUMENT, message)


def _unimplemented(name: str) -> Any:
    async def handler(self: Any, stream: Any) -> None:
        await stream.recv_message()
        raise grpclib.exceptions.GRPCError(grpclib.const.Status.UNIMPLEMENTED, f"fake Modal: {name}")

    return handler


_Base: Any = type(
    "_Base",
    (api_grpc.ModalClientBase,),
    {n: _unimplemented(n) for n in dir(api_grpc.ModalClientBase) if not n.startswith("_")},
)


class _Servicer(_Base):  # type: ignore[misc,valid-type]
    def __init__(self, fake: FakeModal) -> None:
        self.fake = fake

    def _authorise(self, stream: Any) -> None:
        token = (stream.metadata.get("x-modal-token-id"), stream.metadata.get("x-modal-token-secret"))
        if token not in self.fake.tokens:
            raise grpclib.exceptions.GRPCError(grpclib.const.Status.UNAUTHENTICATED, "invalid token")

    def _find(self, app: str, tag: str, environment: str) -> _Deployed:
        name = tag.removesuffix(".*")
        for deployed in self.fake.deployed:
            if (deployed.app, deployed.cls) == (app, name) and deployed.environment in ("", environment):
                return deployed
        raise grpclib.exceptions.GRPCError(
            grpclib.const.Status.NOT_FOUND, f"App '{app}' has no class '{name}' in this environment"
        )

    async def ClientHello(self, stream: Any) -> None:
        await stream.recv_message()
        await stream.send_message(empty_pb2.Empty())

    async def ClassGet(self, stream: Any) -> None:
        request = await stream.recv_message()
        self._authorise(stream)
        deployed = self._find(request.app_name, request.object_tag, request.environment_name)
        function_id = self.fake.function_id(deployed)
        await stream.send_message(
            api_pb2.ClassGetResponse(
                class_id=f"cs-{function_id}",
                handle_metadata=api_pb2.ClassHandleMetadata(
                    class_function_id=function_id,
                    class_function_metadata=_metadata(deployed.real),
                ),
            )
        )

    async def FunctionGet(self, stream: Any) -> None:
        request = await stream.recv_message()
        self._authorise(stream)
        deployed = self._find(request.app_name, request.object_tag, request.environment_name)
        function = api_pb2.FunctionData(
            function_name=f"{deployed.cls}.*",
            is_class=True,
            ranked_functions=[
                api_pb2.FunctionData.RankedFunction(
                    rank=0, function=api_pb2.Function(function_name=f"{deployed.cls}.*")
                )
            ],
        )
        await stream.send_message(
            api_pb2.FunctionGetResponse(
                function_id=self.fake.function_id(deployed),
                handle_metadata=_metadata(deployed.real),
                function=function,
            )
        )

    async def FunctionBindParams(self, stream: Any) -> None:
        request = await stream.recv_message()
        self._authorise(stream)
        deployed = self.fake.by_function_id(request.function_id)
        real = deployed.real
        if real.parameters.format == api_pb2.ClassParameterInfo.PARAM_SERIALIZATION_FORMAT_PROTO:
            from modal._serialization import deserialize_proto_params, validate_parameter_values

            # The schema check Modal's client makes before this call, made again on what arrived.
            try:
                validate_parameter_values(
                    deserialize_proto_params(request.serialized_params), real.parameters.schema
                )
            except Exception as exc:
                raise _refused(f"{real.name}: {exc}") from exc
        try:
            instance = container_instance(real, request.serialized_params)
        except Exception as exc:
            raise _refused(f"a {real.name} container cannot be built with these parameters: {exc}") from exc
        bound_id = f"{request.function_id}-b{len(self.fake.bound)}"
        self.fake.bound[bound_id] = parameter_values(real, instance)
        await stream.send_message(
            api_pb2.FunctionBindParamsResponse(bound_function_id=bound_id, handle_metadata=_metadata(real))
        )

    async def FunctionMap(self, stream: Any) -> None:
        request = await stream.recv_message()
        self._authorise(stream)
        deployed = self.fake.by_function_id(request.function_id)
        call_id = f"fc-{next(self.fake._ids):06d}"
        items = []
        for item in request.pipelined_inputs:
            assert item.input.data_format == api_pb2.DATA_FORMAT_PICKLE, "fake Modal decodes pickle only"
            args, kwargs = pickle.loads(item.input.args)
            payload = args[0] if args else kwargs["task"]
            if request.function_id in self.fake.bound:
                parameters = self.fake.bound[request.function_id]
            else:  # the class itself, unbound: only a class without parameters is called so
                parameters = parameter_values(deployed.real, container_instance(deployed.real, None))
            if item.input.method_name not in deployed.real.methods:
                raise _refused(f"{deployed.cls} has no method {item.input.method_name!r}")
            spawned = Spawned(
                deployed.app,
                deployed.cls,
                item.input.method_name,
                deployed.environment,
                payload,
                call_id,
                parameters,
            )
            self.fake.spawned.append(spawned)
            if deployed.container is not None:
                call_args = args if args else (payload,)
                self.fake.outputs[call_id] = output = _Output()
                threading.Thread(target=output.run, args=(deployed.container, call_args), daemon=True).start()
            items.append(api_pb2.FunctionPutInputsResponseItem(idx=item.idx, input_id=f"in-{call_id}"))
        await stream.send_message(
            api_pb2.FunctionMapResponse(function_call_id=call_id, pipelined_inputs=items)
        )

    async def FunctionGetOutputs(self, stream: Any) -> None:
        """What a container returned (`FunctionCall.get`, `.remote`): its value, or its exception as
        a failure; nothing yet when the wait runs out (Modal answers "unfinished")."""
        request = await stream.recv_message()
        self._authorise(stream)
        output = self.fake.outputs.get(request.function_call_id)
        if output is not None:
            await asyncio.get_running_loop().run_in_executor(None, output.done.wait, max(request.timeout, 0))
        if output is None or not output.done.is_set():
            await stream.send_message(api_pb2.FunctionGetOutputsResponse(num_unfinished_inputs=1))
            return
        if output.error is None:
            result = api_pb2.GenericResult(
                status=api_pb2.GenericResult.GENERIC_STATUS_SUCCESS, data=pickle.dumps(output.value)
            )
        else:
            result = api_pb2.GenericResult(
                status=api_pb2.GenericResult.GENERIC_STATUS_FAILURE, exception=repr(output.error)
            )
        item = api_pb2.FunctionGetOutputsItem(
            result=result,
            idx=0,
            input_id=f"in-{request.function_call_id}",
            data_format=api_pb2.DATA_FORMAT_PICKLE,
        )
        await stream.send_message(api_pb2.FunctionGetOutputsResponse(outputs=[item], num_unfinished_inputs=0))

    async def FunctionCallCancel(self, stream: Any) -> None:
        request = await stream.recv_message()
        self._authorise(stream)
        self.fake.cancelled.append(request.function_call_id)
        await stream.send_message(empty_pb2.Empty())


class _Output:
    """The answer of one spawned call, once its container returns (or raises)."""

    def __init__(self) -> None:
        self.done = threading.Event()
        self.value: Any = None
        self.error: BaseException | None = None

    def run(self, container: Container, args: tuple[Any, ...]) -> None:
        try:
            self.value = container(*args)
        except BaseException as exc:  # the container's failure is the call's answer
            self.error = exc
        finally:
            self.done.set()


@dataclass
class FakeModal:
    """`with FakeModal() as fake:` serves on fake.url (set MODAL_SERVER_URL to it)."""

    tokens: set[tuple[str, str]] = field(default_factory=lambda: {("ak-test", "as-test")})
    deployed: list[_Deployed] = field(default_factory=list)
    spawned: list[Spawned] = field(default_factory=list)
    bound: dict[str, dict[str, Any]] = field(default_factory=dict)
    cancelled: list[str] = field(default_factory=list)
    """Function call ids cancelled through FunctionCallCancel."""
    outputs: dict[str, _Output] = field(default_factory=dict)
    """Each spawned call's answer, by function call id (FunctionGetOutputs)."""
    port: int = field(default_factory=_free_port)

    def __post_init__(self) -> None:
        self._ids = itertools.count(1)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def deploy(self, app: str, cls: str, container: Container | None = None, environment: str = "") -> None:
        """Pretend `modal deploy -m modal_workers.<family>` created `app`/`cls`, with the parameter
        schema and methods the real class declares; `container` runs each spawned task."""
        self.deployed.append(_Deployed(real_class(app, cls), environment, container))

    def reset(self) -> None:
        """Forget deployments and calls (between tests)."""
        self.deployed.clear()
        self.spawned.clear()
        self.bound.clear()
        self.cancelled.clear()
        self.outputs.clear()

    def function_id(self, deployed: _Deployed) -> str:
        return f"fu-{self.deployed.index(deployed)}"

    def by_function_id(self, function_id: str) -> _Deployed:
        return self.deployed[int(function_id.removeprefix("fu-").split("-")[0])]

    def __enter__(self) -> FakeModal:
        def serve() -> None:
            async def main() -> None:
                server = grpclib.server.Server([_Servicer(self)])
                await server.start("127.0.0.1", self.port)
                self._loop = asyncio.get_running_loop()
                self._server = server
                self._ready.set()
                await server.wait_closed()

            asyncio.run(main())

        self._thread = threading.Thread(target=serve, name="fake-modal", daemon=True)
        self._thread.start()
        assert self._ready.wait(10), "fake Modal server did not start"
        return self

    def __exit__(self, *exc: object) -> None:
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self._server.close)
        if self._thread is not None:
            self._thread.join(timeout=5)
