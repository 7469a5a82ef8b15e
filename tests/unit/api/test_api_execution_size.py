"""What the API starts an execution with fits Step Functions' input limit (256 KiB of UTF-8): a
request body under the API's own limit can grow past it once its defaults are written out, and is
refused before it is admitted (no record, no audit entry, no execution, no slot held), not left to
fail in StartExecution; non-ASCII text travels as UTF-8, not as six-byte escapes."""

from __future__ import annotations

import json
from typing import Any

import pytest

from talkstack.contract.fields import MAX_REQUEST_BYTES
from talkstack.errors import ErrorCode, TalkstackError
from tests.support.steps import STATE_MACHINE
from tests.unit.api.api_env import A, executions


def film(item: str, scenes: int = 20, overlays: int = 10, items: int = 8) -> dict[str, Any]:
    """Title cards, each with `overlays` bullet lists of `items` items `item` long."""
    scene = {
        "source": {"type": "title", "title": "Chapter"},
        "overlays": [{"type": "bullets", "items": [item] * items} for _ in range(overlays)],
    }
    return {"scenes": [scene] * scenes}


def body_bytes(body: dict[str, Any]) -> int:
    return len(json.dumps(body, separators=(",", ":"), ensure_ascii=False).encode())


def test_a_body_that_outgrows_the_execution_input_limit_is_refused_before_it_is_admitted(aws, api):
    body = film("x" * 155)
    assert body_bytes(body) < MAX_REQUEST_BYTES  # within the API's limit as sent

    with pytest.raises(TalkstackError) as caught:
        api.submit(A, "composition", body, None)

    assert caught.value.code == ErrorCode.INVALID_REQUEST
    assert caught.value.message.startswith("request: ") and "Step Functions" in caught.value.message
    assert executions(aws) == []
    assert api.svc.store.list_owned(A.key_id)[0] == []  # no record, so no slot held
    entries, _ = api.audit.trail(A.key_id)
    assert entries == []  # nothing submitted, so nothing logged


def test_non_ascii_text_is_started_as_utf8_within_the_limit(aws, api):
    # 2 KiB of three-byte characters a list item: 64 KiB as UTF-8 in all, 128 KiB as \\u escapes.
    body = film("語" * 200, scenes=5, overlays=8, items=4)
    assert body_bytes(body) < MAX_REQUEST_BYTES // 2

    accepted, _ = api.submit(A, "composition", body, None)

    started = aws.sfn.describe_execution(
        executionArn=f"{STATE_MACHINE.replace('stateMachine', 'execution')}:{accepted.job_id}"
    )
    sent = started["input"]
    assert "語" in sent and "\\u" not in sent
    assert len(sent.encode()) < body_bytes(body) + 16 * 1024
