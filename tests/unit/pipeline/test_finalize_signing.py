"""finalize signs every video and audio output before it publishes any: an output that cannot be
signed (c2pa refuses bytes that are not the media they claim to be) publishes nothing."""

from __future__ import annotations

from typing import Any

import pytest

from talkstack.contract.record import JobRecord
from talkstack.contract.worker import StepAddress
from talkstack.errors import TalkstackError
from talkstack.pipeline.finalize import finalize_job
from talkstack.settings import get_provenance_settings
from tests.support.steps import OUTPUT, avatar_request, worker_result


def test_an_output_that_cannot_be_signed_publishes_nothing(store: Any, s3: Any, config: Any, monkeypatch):
    monkeypatch.setenv("TALKSTACK_C2PA", "true")
    get_provenance_settings.cache_clear()
    request = avatar_request()
    record = JobRecord.new("job-1", request)
    record.start_step("avatar", model=request.primary_model)
    record.finish_step("avatar")
    assert store.create(record)
    # The thumbnail listed first: it is not signed, and must not go out ahead of the video.
    marker = worker_result(s3, "job-1", "avatar-1-0123456789", roles=("thumbnail", "video"))
    store.put_step_result("job-1", StepAddress(step="avatar"), marker)

    with pytest.raises(TalkstackError, match=r"could not sign content credentials into video\.mp4"):
        finalize_job("job-1", config, store, s3)

    assert s3.keys(OUTPUT) == set()
    assert store.get("job-1").status == "running"
