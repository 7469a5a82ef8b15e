"""A fake Modal control plane: the network boundary of the `modal` worker backend, faked.

Modal's real client library (`modal.Client`, `modal.Cls.from_name(...)`, `.spawn`) talks gRPC to
MODAL_SERVER_URL. This server answers the four calls a spawn makes (ClassGet, FunctionGet,
FunctionBindParams, FunctionMap) from a table of "deployed" classes, checks the token the client
sends, and hands each spawned input to a Python callable standing in for the Modal container (run
on a thread, like a container picking up an input). Everything on our side of the wire is real.
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

Container = Callable[[dict[str, Any]], Any]


@dataclass
class Spawned:
    app: str
    cls: str
    method: str
    environment: str
    payload: dict[str, Any]
    call_id: str
    parameters: dict[str, Any]


@dataclass
class _Deployed:
    app: str
    cls: str
    environment: str
    container: Container | None
    parameters: dict[str, bool]
    """Boolean class parameters (`modal.parameter`) and their defaults."""


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _metadata(name: str, parameters: dict[str, bool]) -> api_pb2.FunctionHandleMetadata:
    formats = [api_pb2.DATA_FORMAT_PICKLE, api_pb2.DATA_FORMAT_CBOR]
    run = api_pb2.FunctionHandleMetadata(
        function_name=f"{name}.run",
        function_type=api_pb2.Function.FUNCTION_TYPE_FUNCTION,
        is_method=True,
        use_method_name="run",
        supported_input_formats=formats,
    )
    return api_pb2.FunctionHandleMetadata(
        function_name=f"{name}.*",
        function_type=api_pb2.Function.FUNCTION_TYPE_FUNCTION,
        class_parameter_info=api_pb2.ClassParameterInfo(
            format=api_pb2.ClassParameterInfo.PARAM_SERIALIZATION_FORMAT_PROTO,
            schema=[
                api_pb2.ClassParameterSpec(
                    name=key, type=api_pb2.PARAM_TYPE_BOOL, has_default=True, bool_default=default
                )
                for key, default in parameters.items()
            ],
        ),
        method_handle_metadata={"run": run},
        supported_input_formats=formats,
    )


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
                    class_function_metadata=_metadata(deployed.cls, deployed.parameters),
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
                handle_metadata=_metadata(deployed.cls, deployed.parameters),
                function=function,
            )
        )

    async def FunctionBindParams(self, stream: Any) -> None:
        request = await stream.recv_message()
        self._authorise(stream)
        deployed = self.fake.by_function_id(request.function_id)
        values = api_pb2.ClassParameterSet.FromString(request.serialized_params).parameters
        bound = {**deployed.parameters, **{v.name: v.bool_value for v in values}}
        bound_id = f"{request.function_id}-b{len(self.fake.bound)}"
        self.fake.bound[bound_id] = bound
        await stream.send_message(
            api_pb2.FunctionBindParamsResponse(
                bound_function_id=bound_id, handle_metadata=_metadata(deployed.cls, deployed.parameters)
            )
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
            parameters = self.fake.bound.get(request.function_id, deployed.parameters)
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
                threading.Thread(target=deployed.container, args=(payload,), daemon=True).start()
            items.append(api_pb2.FunctionPutInputsResponseItem(idx=item.idx, input_id=f"in-{call_id}"))
        await stream.send_message(
            api_pb2.FunctionMapResponse(function_call_id=call_id, pipelined_inputs=items)
        )

    async def FunctionCallCancel(self, stream: Any) -> None:
        request = await stream.recv_message()
        self._authorise(stream)
        self.fake.cancelled.append(request.function_call_id)
        await stream.send_message(empty_pb2.Empty())


@dataclass
class FakeModal:
    """`with FakeModal() as fake:` serves on fake.url (set MODAL_SERVER_URL to it)."""

    tokens: set[tuple[str, str]] = field(default_factory=lambda: {("ak-test", "as-test")})
    deployed: list[_Deployed] = field(default_factory=list)
    spawned: list[Spawned] = field(default_factory=list)
    bound: dict[str, dict[str, Any]] = field(default_factory=dict)
    cancelled: list[str] = field(default_factory=list)
    """Function call ids cancelled through FunctionCallCancel."""
    port: int = field(default_factory=_free_port)

    def __post_init__(self) -> None:
        self._ids = itertools.count(1)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def deploy(
        self,
        app: str,
        cls: str,
        container: Container | None = None,
        environment: str = "",
        parameters: dict[str, bool] | None = None,
    ) -> None:
        """Pretend `modal deploy` created `app`/`cls`; `container` runs each spawned task."""
        self.deployed.append(_Deployed(app, cls, environment, container, parameters or {}))

    def reset(self) -> None:
        """Forget deployments and calls (between tests)."""
        self.deployed.clear()
        self.spawned.clear()
        self.bound.clear()
        self.cancelled.clear()

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
