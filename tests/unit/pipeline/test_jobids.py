"""Ingest naming (talkstack.pipeline.jobids): the drop folder a manifest names, the readable slug, and
the job id derived from the object, so that every delivery of one upload names the same execution."""

from __future__ import annotations

import re

import pytest

from talkstack.errors import TalkstackError
from talkstack.pipeline.jobids import MAX_JOB_ID, job_id_for_object, manifest_job_name, slug

MANIFEST = "inputs/talk/job.json"


# --- slug ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Démo Video+1", "demo-video-1"),
        ("  --Hello__World--  ", "hello-world"),  # runs become one dash, none at either end
        ("Straße № 5", "strae-no-5"),  # NFKD keeps what has an ASCII form and drops the rest
        ("🙂", ""),
    ],
)
def test_a_slug_is_lowercase_ascii_words_joined_by_single_dashes(text, expected):
    assert slug(text) == expected


def test_a_slug_is_cut_at_48_characters_and_never_ends_in_a_dash():
    assert slug("a" * 100) == "a" * 48
    assert slug("a" * 47 + " b") == "a" * 47  # the cut falls right after a dash: the dash goes too
    assert slug(" " + "a" * 60) == "a" * 48  # a leading separator does not count against the 48
    assert slug("ab cd", limit=3) == "ab"


# --- the drop folder a manifest names -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("key", "name"),
    [
        (MANIFEST, "talk"),
        ("inputs/team/a/job.json", "team/a"),
        ("inputs/Xmas X/job.json", "Xmas X"),  # only the slashes around it go, whatever the name
        ("inputs//talk//job.json", "talk"),
    ],
)
def test_a_manifest_names_its_folder_under_the_input_prefix(key, name):
    assert manifest_job_name(key, "inputs/", "job.json") == name


@pytest.mark.parametrize("key", ["elsewhere/a/job.json", "inputs/a/notes.json", "uploads/k/inputs/job.json"])
def test_a_key_that_is_not_a_manifest_is_an_invalid_request(key):
    with pytest.raises(TalkstackError) as caught:
        manifest_job_name(key, "inputs/", "job.json")

    assert caught.value.to_dict() == {
        "code": "INVALID_REQUEST",
        "message": f"{key!r} is not a manifest: expected inputs/<name>/job.json",
        "details": {},
    }


# --- the job id of an object --------------------------------------------------------------------------


def test_a_job_id_is_the_slug_then_16_hex_of_the_object():
    job_id = job_id_for_object("in-bucket", "inputs/Démo Video+1/job.json", '"etag1"', "Démo Video+1")

    assert re.fullmatch(r"demo-video-1-[0-9a-f]{16}", job_id), job_id
    long_name = "x" * 200
    long_id = job_id_for_object("in-bucket", f"inputs/{long_name}/job.json", "e", long_name)
    assert re.fullmatch(r"x{48}-[0-9a-f]{16}", long_id) and len(long_id) <= MAX_JOB_ID
    assert re.fullmatch(r"job-[0-9a-f]{16}", job_id_for_object("in-bucket", "inputs/🙂/job.json", "e", "🙂"))


def test_the_same_upload_gets_the_same_id_and_any_other_object_another():
    def job_id(bucket: str = "in-bucket", key: str = MANIFEST, etag: str = "e1", **kw: str | None) -> str:
        return job_id_for_object(bucket, key, etag, "talk", **kw)

    same = job_id()
    assert job_id(etag='"e1"') == same  # S3 quotes the ETag in one API and not in another
    others = [
        job_id(bucket="in-bucket-2"),
        job_id(key="inputs/talk/sub/job.json"),
        job_id(etag="e2"),  # the manifest changed
        job_id(version_id="v1"),
    ]
    assert len({same, *others}) == 1 + len(others)
    # In a versioned bucket the version names the object: a re-upload of the same bytes is a new
    # version (a new job), and the version alone decides.
    assert job_id(etag="e1", version_id="v1") == job_id(etag="e2", version_id="v1")
    assert job_id(version_id="v1") != job_id(version_id="v2")
