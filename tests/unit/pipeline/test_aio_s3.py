"""talkstack/pipeline/aio_s3.py: batches stay within their bound, keep their order, end every call
before a failure is raised, and run from synchronous code inside or outside an event loop."""

from __future__ import annotations

import asyncio

import pytest

from talkstack.pipeline.aio_s3 import bounded, run, threaded


def test_a_batch_stays_within_its_bound_and_keeps_its_order():
    in_flight, most = 0, 0

    async def call(i: int) -> int:
        nonlocal in_flight, most
        in_flight += 1
        most = max(most, in_flight)
        await asyncio.sleep(0.01 * (i % 3))
        in_flight -= 1
        return i

    assert run(bounded((call(i) for i in range(20)), limit=4)) == list(range(20))
    assert most == 4


def test_every_call_ends_before_the_first_failure_is_raised():
    ended: list[int] = []

    async def call(i: int) -> int:
        await asyncio.sleep(0.02 if i else 0)
        if i in (0, 3):
            raise ValueError(f"call {i}")
        ended.append(i)
        return i

    with pytest.raises(ValueError, match="call 0"):
        run(bounded(call(i) for i in range(6)))
    assert sorted(ended) == [1, 2, 4, 5]


def test_run_inside_a_running_loop_uses_a_loop_of_its_own():
    class Client:
        def head_object(self, **params: str) -> dict[str, str]:
            return {"Key": params["Key"]}

    async def heads() -> list[dict[str, str]]:
        async with threaded(Client())() as s3:
            return await bounded(s3.head_object(Bucket="b", Key=k) for k in "abc")

    async def handler() -> list[dict[str, str]]:  # e.g. a handler called from async code
        return run(heads())

    assert asyncio.run(handler()) == [{"Key": "a"}, {"Key": "b"}, {"Key": "c"}]
