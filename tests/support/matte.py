"""A matte step's task document, for engine tests that call render() directly."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from talkstack.contract.composition import MatteOptions
from talkstack.contract.worker import Markers, MatteTask, OutputUrl


def matte_task(model: str = "lite-matte", scene: int = 0) -> MatteTask:
    put = OutputUrl(url="http://127.0.0.1:9/none", key="k", content_type="application/json")
    return MatteTask(
        job_id="job-1",
        step="matte",
        attempt_id=f"matte-s{scene}-abc",
        attempt=1,
        model=model,
        options=MatteOptions(model=model, scene=scene),  # type: ignore[arg-type]
        outputs={"mask": put},
        markers=Markers(progress=put, result=put, error=put),
        heartbeat_interval_s=10,
        deadline=datetime.now(UTC) + timedelta(hours=1),
    )
