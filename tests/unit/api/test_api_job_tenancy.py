"""A key sees, lists, pages through and cancels its own jobs only: another key's job is "not found"
in the very words a missing one is, and a page cursor works for the key it was minted for only.
The service runs on moto's in-process DynamoDB and Step Functions (tests/unit/api/api_env.py)."""

from __future__ import annotations

import base64
import json
from collections.abc import Callable

import pytest

from talkstack.api.keys import Principal
from talkstack.api.service import ApiService
from talkstack.contract.record import JobRecord, JobResult, OutputFile
from talkstack.errors import ErrorCode, TalkstackError
from tests.support.steps import OUTPUT, STATE_MACHINE
from tests.unit.api.api_env import A, B, executions

CURSOR_REFUSED = "cursor: not a cursor from a previous page of this list"


def submit(api: ApiService, who: Principal, text: str = "hello") -> str:
    accepted, replayed = api.submit(who, "voice", {"inputs": {"text": text}}, None)
    assert not replayed
    return accepted.job_id


def refusal(call: Callable[[], object]) -> TalkstackError:
    with pytest.raises(TalkstackError) as caught:
        call()
    return caught.value


def cursor_of(key: object) -> str:
    return base64.urlsafe_b64encode(json.dumps(key).encode()).decode()


def test_a_submitted_job_is_recorded_under_its_key_and_its_execution_started(aws, api):
    job_id = submit(api, A, "Hello there.")

    record = api.svc.store.get(job_id)
    assert record is not None and record.source is not None
    assert (record.source.kind, record.source.api_key_id, record.status) == ("api", A.key_id, "queued")
    assert executions(aws) == [job_id]  # moto's Step Functions started it, named after the job
    started = aws.sfn.describe_execution(
        executionArn=f"{STATE_MACHINE.replace('stateMachine', 'execution')}:{job_id}"
    )
    assert json.loads(started["input"])["request"]["inputs"]["text"] == "Hello there."
    assert api.svc.emit.types(job_id) == ["job.queued"]
    (entry,), _ = api.audit.trail(A.key_id)
    assert (entry.action, entry.object.id) == ("job.submitted", job_id)


def test_a_cursor_pages_through_its_owners_jobs_and_is_refused_to_another_key(api):
    mine = [submit(api, A, f"job {i}") for i in range(3)]
    theirs = submit(api, B)

    first = api.list_jobs(A, None, 2, None)
    assert first.next_cursor is not None and len(first.jobs) == 2
    rest = api.list_jobs(A, None, 2, first.next_cursor)
    assert [j.job_id for j in first.jobs + rest.jobs] == mine[::-1]  # newest first, each once
    assert rest.next_cursor is None

    # B replays A's cursor: refused outright, not answered with a page of B's list
    caught = refusal(lambda: api.list_jobs(B, None, 2, first.next_cursor))
    assert (caught.code, caught.message) == (ErrorCode.INVALID_REQUEST, CURSOR_REFUSED)
    assert [j.job_id for j in api.list_jobs(B, None, 10, None).jobs] == [theirs]


def test_a_cursor_rewritten_to_name_another_key_yields_none_of_the_first_keys_jobs(api):
    mine = [submit(api, A, f"job {i}") for i in range(3)]
    theirs = submit(api, B)
    first = api.list_jobs(A, None, 1, None)
    key = json.loads(base64.urlsafe_b64decode(first.next_cursor or ""))
    key["owner"] = {"S": B.key_id}  # B edits A's cursor to pass as its own

    jobs = api.list_jobs(B, None, 10, cursor_of(key)).jobs

    assert not {j.job_id for j in jobs} & set(mine) and {j.job_id for j in jobs} <= {theirs}


@pytest.mark.parametrize(
    "cursor",
    [
        "%%% not base64 %%%",
        base64.urlsafe_b64encode(b"\xff\xfe not utf-8").decode(),
        cursor_of("a string"),
        cursor_of([1, 2]),
        cursor_of({"owner": A.key_id}),  # owner not in DynamoDB's form
        cursor_of({"owner": {"S": A.key_id}, "pk": 5, "sk": {"S": "RECORD"}, "created_at": {"S": "x"}}),
        cursor_of(
            {
                "owner": {"S": A.key_id},
                "pk": {"S": "JOB#x"},
                "sk": {"S": "RECORD"},
                "created_at": {"S": "2026-01-01"},
                "extra": {"S": "x"},  # not a start key of the owner index
            }
        ),
        cursor_of({"owner": {"S": A.key_id}}),  # a start key of no index
    ],
)
def test_a_forged_cursor_is_refused_as_a_bad_request(api, cursor):
    submit(api, A)
    caught = refusal(lambda: api.list_jobs(A, None, 10, cursor))
    assert (caught.code, caught.message) == (ErrorCode.INVALID_REQUEST, CURSOR_REFUSED)


def test_the_list_filters_by_status_and_clamps_the_page_size(api):
    first, second = submit(api, A, "one"), submit(api, A, "two")
    api.cancel(A, first)

    assert [j.job_id for j in api.list_jobs(A, "cancelled", 10, None).jobs] == [first]
    assert [j.job_id for j in api.list_jobs(A, " queued , running", 10, None).jobs] == [second]
    assert len(api.list_jobs(A, None, 0, None).jobs) == 1  # at least one per page
    caught = refusal(lambda: api.list_jobs(A, "queued,paused", 10, None))
    assert caught.code == ErrorCode.INVALID_REQUEST and "unknown paused" in caught.message


def test_another_keys_job_is_not_found_in_the_words_of_a_missing_one(aws, api):
    job_id = submit(api, A)
    missing = "voice-0000000000000000"

    for call in (api.get_job, api.cancel):
        theirs = refusal(lambda call=call: call(B, job_id))
        absent = refusal(lambda call=call: call(B, missing))
        assert theirs.code == absent.code == ErrorCode.NOT_FOUND
        assert theirs.message.replace(job_id, missing) == absent.message
        assert theirs.details == absent.details

    # B's cancel changed nothing: A's job is queued and its execution runs
    record = api.svc.store.get(job_id)
    assert record is not None and record.status == "queued"
    arn = f"{STATE_MACHINE.replace('stateMachine', 'execution')}:{job_id}"
    assert aws.sfn.describe_execution(executionArn=arn)["status"] == "RUNNING"
    assert api.get_job(A, job_id).job_id == job_id
    long_id = refusal(lambda: api.get_job(A, "x" * 81))
    assert long_id.code == ErrorCode.NOT_FOUND


def test_a_cancel_stops_the_execution_and_is_logged_once(aws, api):
    job_id = submit(api, A)

    view = api.cancel(A, job_id)
    again = api.cancel(A, job_id)

    assert view.status == again.status == "cancelled"
    arn = f"{STATE_MACHINE.replace('stateMachine', 'execution')}:{job_id}"
    assert aws.sfn.describe_execution(executionArn=arn)["status"] == "ABORTED"
    actions = [e.action for e in api.audit.trail(A.key_id)[0]]
    assert actions.count("job.cancelled") == 1  # the second cancel cancelled nothing


def test_a_completed_jobs_view_hands_out_signed_links_and_logs_them(aws, api):
    job_id = submit(api, A)
    aws.s3.put_object(Bucket=OUTPUT, Key=f"{job_id}/speech.wav", Body=b"RIFF")
    audio = OutputFile(
        kind="audio", bucket=OUTPUT, key=f"{job_id}/speech.wav", content_type="audio/wav", bytes=4
    )
    api.svc.store.update(job_id, lambda r: r.mark_completed(JobResult(outputs=[audio], duration_s=1.0)))

    view = api.get_job(A, job_id)

    assert view.result is not None
    (link,) = view.result.outputs
    assert link.url is not None and f"/{job_id}/speech.wav" in link.url and "Signature" in link.url
    entries = [e for e in api.audit.trail(A.key_id)[0] if e.action == "output.url_issued"]
    assert [e.object.id for e in entries] == [job_id]
    # A job that is not completed has no links, and reading it logs nothing
    other = submit(api, A, "still queued")
    assert api.get_job(A, other).result is None
    assert [e.object.id for e in api.audit.trail(A.key_id)[0] if e.action == "output.url_issued"] == [job_id]


def test_a_result_on_a_job_that_did_not_complete_gets_no_links(aws, api):
    # A job cancelled while publishing keeps what finalize wrote in its record, but its outputs are
    # being removed: no download link may point at them.
    job_id = submit(api, A)
    audio = OutputFile(
        kind="audio", bucket=OUTPUT, key=f"{job_id}/speech.wav", content_type="audio/wav", bytes=4
    )

    def cancelled_with_result(record: JobRecord) -> None:
        record.result = JobResult(outputs=[audio], duration_s=1.0)
        record.mark_cancelled()

    api.svc.store.update(job_id, cancelled_with_result)

    assert api.get_job(A, job_id).result is None
    assert [e.action for e in api.audit.trail(A.key_id)[0]] == ["job.submitted"]
