"""Concurrent S3 work: many small requests of one run in flight at once, on one event loop.

What uses it: finalize's checks and copies of a job's outputs (a composition publishes a dozen
files: the video, its alpha copies, captions, a preview, a thumbnail per scene) and the upload of a
template's bundled media into the input bucket (talkstack/pipeline/bundled_assets.py).

The coroutines take an `AsyncS3`, which opens an async client. The finalize and API Lambdas' is
aioboto3's (talkstack/pipeline/aioboto3_s3.py; their layers carry it). Code handed only a
synchronous client (an operator's release of a held job; a test's in-memory fake; a client inside
moto's in-process `mock_aws`, which patches botocore's synchronous HTTP only) runs the same
coroutines over that client in threads: `threaded(s3)`. This module imports no aioboto3, so a
Lambda whose layer lacks it may import it.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any, TypeVar

T = TypeVar("T")

AsyncS3 = Callable[[], AbstractAsyncContextManager[Any]]
"""Opens an async S3 client (`async with opener() as s3: await s3.head_object(...)`)."""

PARALLEL_REQUESTS = 8
"""At most this many requests of one batch in flight: enough to hide S3's per-request latency for a
composition's dozen files, few enough to stay clear of the client's connection pool (32)."""


class _Threaded:
    """A synchronous client's methods as coroutines, each call on a worker thread."""

    def __init__(self, client: Any) -> None:
        self._client = client

    def __getattr__(self, name: str) -> Callable[..., Awaitable[Any]]:
        method = getattr(self._client, name)

        async def call(*args: Any, **kwargs: Any) -> Any:
            return await asyncio.to_thread(method, *args, **kwargs)

        return call


def threaded(client: Any) -> AsyncS3:
    """Opens `client` (synchronous: boto3, or a test's fake) as an async client."""

    @asynccontextmanager
    async def open_client() -> AsyncIterator[Any]:
        yield _Threaded(client)

    return open_client


async def bounded(calls: Iterable[Awaitable[T]], limit: int = PARALLEL_REQUESTS) -> list[T]:
    """Await `calls`, at most `limit` at once; their results in order. Every call runs to its end
    before the first failure (in order) is raised, so nothing is still writing when the caller
    handles it (finalize fails the job; nothing half-published keeps changing behind it)."""
    gate = asyncio.Semaphore(limit)

    async def one(call: Awaitable[T]) -> T:
        async with gate:
            return await call

    results = await asyncio.gather(*(one(c) for c in calls), return_exceptions=True)
    for result in results:
        if isinstance(result, BaseException):
            raise result
    return results  # type: ignore[return-value]


def run(coroutine: Awaitable[T]) -> T:
    """Run `coroutine` to its end from synchronous code (a Lambda handler, the local stack's
    threads). Inside a running event loop it runs on a loop of its own in another thread."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coroutine)  # type: ignore[arg-type]
    with ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(asyncio.run, coroutine).result()  # type: ignore[arg-type]
