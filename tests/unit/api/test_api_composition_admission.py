"""A composition's scenes render side by side (the Scenes Map runs `source.gpu_slots` at a time):
admission gives it a GPU task slot per scene with an engine, out of what the key's tier has left,
so its scenes run in parallel without passing the tier; a preview holds none."""

from __future__ import annotations

from typing import Any

from talkstack.api.keys import Principal
from talkstack.api.models import UploadRequest
from talkstack.api.service import ApiService
from talkstack.pipeline.plan import max_concurrency
from tests.support.steps import SAMPLES
from tests.unit.api.api_env import A

PNG = (SAMPLES / "portrait.png").read_bytes()
CONSENT = {
    "attested_by": "ops@example.com",
    "attested_at": "2026-01-01T00:00:00Z",
    "subject": "Grace",
    "scope": "likeness",
    "statement": "I agree to my likeness being animated.",
}


def photo(api: ApiService, who: Principal) -> str:
    ticket = api.uploads.create(
        who, UploadRequest(filename="face.png", content_type="image/png", bytes=len(PNG))
    )
    upload = api.uploads.get(who, ticket.upload_id)
    assert upload is not None
    api.svc.s3.put_object(Bucket=upload.bucket, Key=upload.key, Body=PNG, ContentType="image/png")
    return ticket.upload_id


def film(image: str, avatars: int, preview: bool = False) -> dict[str, Any]:
    speaker = {"source": {"type": "avatar", "inputs": {"image": image, "text": "Hello there."}}}
    title = {"source": {"type": "title", "title": "Chapter"}}
    return {"scenes": [speaker] * avatars + [title], "consent": CONSENT, "preview": preview}


def test_a_composition_holds_a_gpu_task_per_engine_scene_within_what_the_tier_has_left(aws, api):
    image = photo(api, A)

    accepted, _ = api.submit(A, "composition", film(image, avatars=3), None)

    record = api.svc.store.get(accepted.job_id)
    assert record is not None and record.source is not None
    assert record.source.gpu_slots == 3  # three avatar scenes; the title card runs no engine
    assert max_concurrency(record.source, record.request, api.config) == 3

    # The rest of the tier's GPU tasks, no more: a second one gets what is left.
    big = film(image, avatars=A.limits.gpu_tasks)
    second, _ = api.submit(A, "composition", big, None)
    held = api.svc.store.get(second.job_id)
    assert held is not None and held.source is not None
    assert held.source.gpu_slots == A.limits.gpu_tasks - 3


def test_a_composition_preview_holds_no_gpu_task(aws, api):
    accepted, _ = api.submit(A, "composition", film(photo(api, A), avatars=3, preview=True), None)

    record = api.svc.store.get(accepted.job_id)
    assert record is not None and record.source is not None and record.source.gpu_slots is None
