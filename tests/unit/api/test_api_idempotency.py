"""Idempotency-Key through the real submit (powertools' idempotency on moto's DynamoDB, executions
started in moto's Step Functions): a key's retry gets its own job back and starts nothing; the same
Idempotency-Key from another API key is another request; a changed request under a used key is
refused."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from talkstack.api.service import IDEMPOTENCY_PK, ApiService
from talkstack.errors import ErrorCode, TalkstackError
from tests.support.steps import JOBS_TABLE
from tests.unit.api.api_env import A, B, executions

BODY = {"inputs": {"text": "Hello there."}}


def refusal(call: Callable[[], object]) -> TalkstackError:
    with pytest.raises(TalkstackError) as caught:
        call()
    return caught.value


def partition(ddb: Any, pk: str) -> list[dict[str, Any]]:
    query = {"KeyConditionExpression": "pk = :p", "ExpressionAttributeValues": {":p": {"S": pk}}}
    return ddb.query(TableName=JOBS_TABLE, **query)["Items"]


def test_a_retry_with_the_same_key_and_body_gets_the_same_job_and_starts_nothing(aws, api: ApiService):
    first, replayed_first = api.submit(A, "voice", BODY, "order-1")
    again, replayed_again = api.submit(A, "voice", dict(BODY), "order-1")

    assert (replayed_first, replayed_again) == (False, True)
    assert again == first
    assert executions(aws) == [first.job_id]
    assert [r.job_id for r in api.svc.store.list_owned(A.key_id)[0]] == [first.job_id]


def test_the_same_idempotency_key_from_another_api_key_is_a_request_of_its_own(aws, api: ApiService):
    mine, _ = api.submit(A, "voice", BODY, "order-1")

    theirs, replayed = api.submit(B, "voice", BODY, "order-1")

    assert not replayed and theirs.job_id != mine.job_id
    assert api.get_job(B, theirs.job_id).job_id == theirs.job_id  # B's own job …
    assert refusal(lambda: api.get_job(B, mine.job_id)).code == ErrorCode.NOT_FOUND  # … not A's
    assert executions(aws) == sorted([mine.job_id, theirs.job_id])
    # each key's records are in a partition of its own (its throughput, its item collection)
    for key_id in (A.key_id, B.key_id):
        assert len(partition(aws.ddb, f"{IDEMPOTENCY_PK}{key_id}")) == 1
    assert partition(aws.ddb, IDEMPOTENCY_PK) == []
    # and each key's later retry still finds its own job
    assert api.submit(A, "voice", BODY, "order-1")[0].job_id == mine.job_id
    assert api.submit(B, "voice", BODY, "order-1")[0].job_id == theirs.job_id


@pytest.mark.parametrize(
    ("task", "body"),
    [
        ("voice", {"inputs": {"text": "Something else."}}),  # another body
        ("avatar", BODY),  # the same body to another endpoint
    ],
)
def test_a_used_key_with_another_request_is_refused(aws, api: ApiService, task, body):
    first, _ = api.submit(A, "voice", BODY, "order-1")

    caught = refusal(lambda: api.submit(A, task, body, "order-1"))

    assert caught.code == ErrorCode.IDEMPOTENCY_KEY_REUSED
    assert "different request body" in caught.message
    assert executions(aws) == [first.job_id]


def test_a_refused_request_does_not_use_up_its_idempotency_key(aws, api: ApiService):
    caught = refusal(lambda: api.submit(A, "voice", {"inputs": {"text": "hi"}, "job_id": "mine"}, "order-1"))
    assert caught.code == ErrorCode.INVALID_REQUEST

    accepted, replayed = api.submit(A, "voice", BODY, "order-1")

    assert not replayed and executions(aws) == [accepted.job_id]


@pytest.mark.parametrize("key", ["", "k" * 256, "line\nbreak", "tab\there"])
def test_an_idempotency_key_must_be_1_to_255_printable_characters(aws, api: ApiService, key):
    caught = refusal(lambda: api.submit(A, "voice", BODY, key))
    assert caught.code == ErrorCode.INVALID_REQUEST and "Idempotency-Key" in caught.message
    assert executions(aws) == []


@pytest.mark.parametrize("key", ["k", "k" * 255, "a UUID-like key: 7f0c…"])
def test_idempotency_keys_within_the_rules_are_taken(aws, api: ApiService, key):
    accepted, replayed = api.submit(A, "voice", BODY, key)
    assert not replayed and executions(aws) == [accepted.job_id]


def test_without_a_key_every_submission_is_a_new_job(aws, api: ApiService):
    first, _ = api.submit(A, "voice", BODY, None)
    second, replayed = api.submit(A, "voice", BODY, None)
    assert not replayed and first.job_id != second.job_id
    assert executions(aws) == sorted([first.job_id, second.job_id])


def test_a_replay_record_expires_through_the_tables_own_ttl_attribute(aws, api: ApiService):
    """DynamoDB deletes an item only by the attribute the table names for TTL (jobs_table.TTL_ATTRIBUTE,
    the CDK table's too): a record carrying its expiry under any other name would keep every key's
    replays for ever."""
    import time

    from talkstack.api.service import IDEMPOTENCY_TTL_S
    from talkstack.pipeline.jobs_table import TTL_ATTRIBUTE

    before = int(time.time())
    api.submit(A, "voice", BODY, "order-ttl")
    (record,) = partition(aws.ddb, f"{IDEMPOTENCY_PK}{A.key_id}")
    expires_at = int(record[TTL_ATTRIBUTE]["N"])
    assert before + IDEMPOTENCY_TTL_S <= expires_at <= int(time.time()) + IDEMPOTENCY_TTL_S
