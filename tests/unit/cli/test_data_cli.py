"""`talkstack jobs delete`: the audit entry names the job's owner as the rest of the trail does."""

from __future__ import annotations

from types import SimpleNamespace

from talkstack.cli import data
from talkstack.contract.record import JobRecord, JobSource
from tests.support.steps import INPUT, avatar_request, make_config


def test_a_drop_jobs_deletion_is_logged_under_its_drop_folder_whatever_the_input_prefix(
    no_pipeline_environment, monkeypatch
):
    record = JobRecord.new("talk-0123456789abcdef", avatar_request())
    record.source = JobSource(kind="s3", bucket=INPUT, key="drops/team-a/job.json")
    actors = []

    def delete_job(job: JobRecord, actor):
        actors.append(actor.key_id)
        return SimpleNamespace(objects=[], counts={}, kept=[])

    deleter = SimpleNamespace(
        config=make_config(input_prefix="drops/"),
        store=SimpleNamespace(get=lambda job_id: record),
        delete_job=delete_job,
    )
    monkeypatch.setattr(data, "_deleter", lambda *args: deleter)
    monkeypatch.setattr(data, "print_receipt", lambda *args: None)

    data.delete_cmd(record.job_id, deployed=True)

    assert actors == ["drop:team-a"]
