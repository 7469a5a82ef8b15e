"""Tenant namespaces (talkstack.pipeline.tenancy): the grants settings, what each kind of job may read,
and where an API job publishes. Pure rules: no S3 call is involved in any of them."""

from __future__ import annotations

import json
from typing import Any

import pytest
from pydantic import ValidationError

from talkstack.api.app import error_response
from talkstack.api.uploads import UPLOAD_PREFIX
from talkstack.contract.fields import MediaRef
from talkstack.contract.parse import parse_job_request
from talkstack.contract.record import JobSource
from talkstack.errors import TalkstackError
from talkstack.pipeline.config import S3Grant
from talkstack.pipeline.tenancy import UPLOADS_PREFIX, Namespace
from tests.support.steps import INPUT, OUTPUT, WORK, make_config

KEY, OTHER = "keya", "keyb"


def ref(url: str) -> MediaRef:
    return MediaRef.parse(url)


def voice(**output: Any) -> Any:
    return parse_job_request({"task": "voice", "inputs": {"text": "hi"}, "output": output})


def answer(error: TalkstackError) -> tuple[int, dict[str, Any]]:
    """What the API sends back for a refusal: its HTTP status and the `error` object of its body."""
    response = error_response(error)
    return response.status_code, json.loads(response.body)["error"]


# --- the grants settings ------------------------------------------------------------------------------


def test_grants_parse_into_locations(no_pipeline_environment):
    config = make_config(
        read_grants=" keya=s3://shared/team , *=s3://assets,drop:team/a b=s3://media/p/,drop:*=s3://lib/x/y/",
        write_grants="keya=s3://acme-out/",
    )

    assert config.read_grants == [
        S3Grant("keya", "shared", "team/"),  # a folder: never `teamwork/…`
        S3Grant("*", "assets", ""),
        S3Grant("drop:team/a b", "media", "p/"),
        S3Grant("drop:*", "lib", "x/y/"),
    ]
    assert config.write_grants == [S3Grant("keya", "acme-out", "")]
    assert make_config().read_grants == [] and make_config().write_grants == []


@pytest.mark.parametrize(
    ("value", "mention"),
    [
        ("keya", "expected grantee=s3://bucket/prefix/"),
        ("KeyA=s3://bucket/", "the grantee being an API key id"),
        ("keya=https://bucket/x", "must be s3://bucket/"),
        ("keya=s3://bucket/../x", "'..' segments"),
        ("keya=s3://Bucket/", "invalid S3 bucket name"),
        ("drop:=s3://bucket/", "the grantee being"),
    ],
)
def test_a_malformed_grant_fails_at_start_up(no_pipeline_environment, value, mention):
    with pytest.raises(ValidationError, match="read_grants") as caught:
        make_config(read_grants=value)
    assert mention in str(caught.value)


def test_write_grants_are_for_api_keys(no_pipeline_environment):
    with pytest.raises(ValidationError, match="write grants are for API keys"):
        make_config(write_grants="drop:*=s3://out-extra/")


# --- what an API key reads ----------------------------------------------------------------------------


def test_an_api_key_reads_its_uploads_and_outputs_and_what_is_granted(no_pipeline_environment):
    config = make_config(read_grants=f"{KEY}=s3://shared/team/,*=s3://assets/common/")
    mine = Namespace.for_source(JobSource(kind="api", api_key_id=KEY), config)

    readable = [
        f"s3://{INPUT}/uploads/{KEY}/upl_1/speech.wav",
        f"s3://{OUTPUT}/tenants/{KEY}/voice-1/speech.wav",
        "s3://shared/team/a.wav",
        "s3://assets/common/a.wav",
    ]
    unreadable = [
        f"s3://{INPUT}/uploads/{OTHER}/upl_1/speech.wav",  # another key's upload
        f"s3://{INPUT}/uploads/{KEY}x/upl_1/speech.wav",  # a key id that merely starts alike
        f"s3://{INPUT}/inputs/talk/speech.wav",  # a drop folder
        f"s3://{OUTPUT}/tenants/{OTHER}/voice-1/speech.wav",  # another key's output
        f"s3://{OUTPUT}/voice-1/speech.wav",  # a drop job's output
        "s3://shared/teamwork/a.wav",
        "s3://assets/other/a.wav",
        "s3://elsewhere/a.wav",
    ]
    assert [mine.may_read(ref(u)) for u in readable] == [True] * len(readable)
    assert [mine.may_read(ref(u)) for u in unreadable] == [False] * len(unreadable)
    theirs = Namespace.for_key(OTHER, config)
    assert not theirs.may_read(ref("s3://shared/team/a.wav"))  # KEY's grant is KEY's alone
    assert theirs.may_read(ref("s3://assets/common/a.wav"))


def test_the_uploads_folder_is_the_one_the_api_stores_uploads_in():
    assert UPLOADS_PREFIX == UPLOAD_PREFIX


def test_a_refused_read_is_the_missing_input_answer(config):
    namespace = Namespace.for_key(KEY, config)
    theirs = f"s3://{INPUT}/uploads/{OTHER}/upl_1/speech.wav"
    request = parse_job_request({"task": "voice", "inputs": {"text": "hi", "reference_voice": theirs}})

    with pytest.raises(TalkstackError) as caught:
        namespace.check_reads(request)

    assert caught.value.to_dict() == namespace.not_found("inputs.reference_voice", theirs).to_dict()
    # Only what the caller sent: the same text, field and ref whether or not the object exists.
    assert answer(caught.value) == (
        404,
        {
            "code": "INPUT_NOT_FOUND",
            "message": f"inputs.reference_voice: {theirs} does not exist or this API key may not read it",
            "details": {"field": "inputs.reference_voice", "ref": theirs},
        },
    )


def test_a_drop_folder_gets_the_same_missing_input_answer(config):
    folder = Namespace.for_drop(INPUT, "inputs/talk/job.json", config)
    elsewhere = f"s3://{INPUT}/inputs/other/speech.wav"
    request = parse_job_request({"task": "voice", "inputs": {"text": "hi", "reference_voice": elsewhere}})

    with pytest.raises(TalkstackError) as caught:
        folder.check_reads(request)

    assert caught.value.to_dict() == {
        "code": "INPUT_NOT_FOUND",
        "message": f"inputs.reference_voice: {elsewhere} does not exist or this drop folder may not read it",
        "details": {"field": "inputs.reference_voice", "ref": elsewhere},
    }


def test_an_api_source_without_its_key_is_refused(config):
    with pytest.raises(TalkstackError) as caught:
        Namespace.for_source(JobSource(kind="api"), config)

    assert answer(caught.value) == (
        400,
        {"code": "INVALID_REQUEST", "message": "source: an api job names its api_key_id", "details": {}},
    )


def test_an_api_keys_own_write_grant_is_readable_to_it_alone(no_pipeline_environment):
    config = make_config(write_grants=f"{KEY}=s3://acme-out/videos/")

    assert Namespace.for_key(KEY, config).may_read(ref("s3://acme-out/videos/voice-1/speech.wav"))
    assert not Namespace.for_key(OTHER, config).may_read(ref("s3://acme-out/videos/voice-1/speech.wav"))


# --- what a drop folder reads -------------------------------------------------------------------------


def test_a_drop_folder_reads_itself_and_its_grants(no_pipeline_environment):
    config = make_config(read_grants="drop:team/a=s3://media/a/,drop:*=s3://media/all/,*=s3://media/api/")
    folder = Namespace.for_source(JobSource(kind="s3", bucket=INPUT, key="inputs/team/a/job.json"), config)

    assert folder.owner == "inputs/team/a/"
    for url in ("inputs/team/a/x.wav", "inputs/team/a/sub/x.wav"):
        assert folder.may_read(ref(f"s3://{INPUT}/{url}"))
    for url in ("s3://media/a/x.wav", "s3://media/all/x.wav"):
        assert folder.may_read(ref(url))
    for url in (
        f"s3://{INPUT}/inputs/team/b/x.wav",
        f"s3://{INPUT}/inputs/team/ab/x.wav",
        f"s3://{INPUT}/uploads/{KEY}/upl_1/x.wav",
        f"s3://{OUTPUT}/x.wav",
        "s3://media/api/x.wav",  # `*` is every API key, not every drop folder
    ):
        assert not folder.may_read(ref(url)), url


def test_a_manifest_at_the_input_prefix_reads_only_the_files_beside_it(config):
    root = Namespace.for_drop(INPUT, "inputs/job.json", config)

    assert root.may_read(ref(f"s3://{INPUT}/inputs/speech.wav"))
    assert not root.may_read(ref(f"s3://{INPUT}/inputs/other/speech.wav"))


def test_a_manifest_at_the_bucket_root_reads_only_the_files_beside_it(config):
    root = Namespace.for_drop(INPUT, "job.json", config)

    assert root.owner == "" and root.may_read(ref(f"s3://{INPUT}/speech.wav"))
    assert not root.may_read(ref(f"s3://{INPUT}/inputs/talk/speech.wav"))


def test_a_drop_folder_is_in_the_bucket_its_manifest_was_dropped_in(config):
    elsewhere = JobSource(kind="s3", bucket="drops-2", key="inputs/talk/job.json")
    default = JobSource(kind="s3", key="inputs/talk/job.json")  # no bucket: the input bucket

    assert Namespace.for_source(elsewhere, config).may_read(ref("s3://drops-2/inputs/talk/a.wav"))
    assert not Namespace.for_source(elsewhere, config).may_read(ref(f"s3://{INPUT}/inputs/talk/a.wav"))
    assert Namespace.for_source(default, config).may_read(ref(f"s3://{INPUT}/inputs/talk/a.wav"))


def test_a_drop_folder_is_named_by_its_whole_path(no_pipeline_environment):
    # Only the slashes around the folder's name go: a name that begins or ends with 'X' keeps its
    # grants, and a one-letter folder its subfolders.
    config = make_config(read_grants="drop:TeamX=s3://media/x/")

    assert Namespace.for_drop(INPUT, "inputs/TeamX/job.json", config).may_read(ref("s3://media/x/a.wav"))
    assert Namespace.for_drop(INPUT, "inputs/X/job.json", config).may_read(
        ref(f"s3://{INPUT}/inputs/X/t/a.wav")
    )


def test_an_operator_keeps_the_readable_buckets(no_pipeline_environment):
    config = make_config(readable_buckets="shared-media")
    operator = Namespace.for_source(JobSource(kind="execution"), config)

    assert operator.may_read(ref(f"s3://{INPUT}/uploads/{KEY}/upl_1/x.wav"))
    assert operator.may_read(ref("s3://shared-media/x.wav"))
    request = parse_job_request(
        {"task": "voice", "inputs": {"text": "hi", "reference_voice": "s3://nope/x.wav"}}
    )
    with pytest.raises(TalkstackError) as caught:
        operator.check_reads(request)
    assert "shared-media" not in caught.value.message
    assert answer(caught.value) == (
        403,
        {
            "code": "INPUT_FORBIDDEN",
            "message": "inputs.reference_voice: this stack may not read bucket 'nope'; an operator adds it "
            "to TALKSTACK_READABLE_BUCKETS",
            "details": {"field": "inputs.reference_voice", "bucket": "nope"},
        },
    )
    assert operator.owner == "operator"


# --- where an API job publishes -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("output", "key"),
    [
        ({}, f"tenants/{KEY}/voice-1/speech.wav"),
        ({"prefix": ""}, f"tenants/{KEY}/speech.wav"),
        ({"prefix": "renders/2026/"}, f"tenants/{KEY}/renders/2026/speech.wav"),
        ({"prefix": "voice-9", "filename": "hi.mp3"}, f"tenants/{KEY}/voice-9/hi.mp3"),
        ({"prefix": "r", "unique_suffix": True}, f"tenants/{KEY}/r/voice-1/speech.wav"),
        ({"prefix": "", "unique_suffix": True}, f"tenants/{KEY}/voice-1/speech.wav"),
        ({"bucket": OUTPUT, "prefix": f"tenants/{OTHER}"}, f"tenants/{KEY}/tenants/{OTHER}/speech.wav"),
    ],
)
def test_an_api_job_always_publishes_under_its_keys_folder(config, output, key):
    placed = Namespace.for_key(KEY, config).place_output(voice(**output), "voice-1")

    assert placed.output.bucket == OUTPUT and placed.output_key("voice-1") == key
    Namespace.for_key(KEY, config).check_output(placed)  # and the validate step agrees


def test_an_api_key_publishes_to_another_bucket_only_under_a_write_grant(no_pipeline_environment):
    config = make_config(write_grants=f"{KEY}=s3://acme-out/videos/,*=s3://shared-out/")

    mine = Namespace.for_key(KEY, config).place_output(voice(bucket="acme-out", prefix="p"), "voice-1")
    assert (mine.output.bucket, mine.output_key("voice-1")) == ("acme-out", "videos/p/speech.wav")
    Namespace.for_key(KEY, config).check_output(mine)  # the validate step agrees: its grant's folder
    shared = Namespace.for_key(OTHER, config).place_output(voice(bucket="shared-out"), "voice-2")
    assert shared.output_key("voice-2") == f"tenants/{OTHER}/voice-2/speech.wav"
    Namespace.for_key(OTHER, config).check_output(shared)
    assert Namespace.for_key(OTHER, config).may_read(ref(f"s3://shared-out/tenants/{OTHER}/voice-2/a.wav"))
    with pytest.raises(TalkstackError) as caught:
        Namespace.for_key(OTHER, config).place_output(voice(bucket="acme-out"), "voice-3")
    assert answer(caught.value) == (
        400,
        {
            "code": "INVALID_REQUEST",
            "message": "output.bucket: this API key may not publish to that bucket; omit output.bucket "
            "(outputs go to this key's folder of the output bucket) or ask the operator for a write grant",
            "details": {},
        },
    )  # no bucket named: not the one asked for, nor any the stack may use


def test_an_api_source_whose_output_is_outside_its_folder_is_refused(config):
    namespace = Namespace.for_key(KEY, config)
    outside = (
        voice(),
        voice(bucket=OUTPUT, prefix=f"tenants/{OTHER}/x"),
        voice(bucket=OUTPUT, prefix=""),
        voice(bucket=OUTPUT),  # the job-id folder: at the bucket root
        voice(prefix=f"tenants/{KEY}/x"),  # not placed: no bucket named
    )
    for request in outside:
        with pytest.raises(TalkstackError) as caught:
            namespace.check_output(request)
        assert answer(caught.value) == (
            400,
            {
                "code": "INVALID_REQUEST",
                "message": "output: an API job publishes under its key's output folder; submit it through "
                "the API",
                "details": {},
            },
        ), request.output


def test_a_prefix_too_long_once_placed_is_refused(config):
    prefix = "a" * 890  # fits alone; `tenants/keya/` + it is over the 900 characters a prefix may have

    with pytest.raises(TalkstackError) as caught:
        Namespace.for_key(KEY, config).place_output(voice(prefix=prefix), "voice-1")

    assert answer(caught.value) == (
        400,
        {
            "code": "INVALID_REQUEST",
            "message": "output.prefix: too long once placed under this key's output folder (1 error(s)); "
            "use a shorter prefix",
            "details": {},
        },
    )


def test_drop_and_operator_jobs_keep_their_output_layout(config):
    for namespace in (
        Namespace.for_drop(INPUT, "inputs/talk/job.json", config),
        Namespace.for_source(JobSource(kind="execution"), config),
    ):
        request = voice(prefix="renders")
        assert namespace.place_output(request, "v-1") is request
        namespace.check_output(request)
        with pytest.raises(TalkstackError) as caught:
            namespace.check_output(voice(bucket="not-ours"))
        assert answer(caught.value) == (
            400,
            {
                "code": "INVALID_REQUEST",
                "message": "output.bucket: this stack may not publish to 'not-ours'; omit output.bucket to "
                "use the stack's output bucket, or an operator adds it to TALKSTACK_WRITABLE_BUCKETS",
                "details": {},
            },
        )  # the stack's own buckets go unnamed


def test_a_drop_may_not_plant_files_in_the_api_keys_folders(config):
    folder = Namespace.for_drop(INPUT, "inputs/talk/job.json", config)
    for prefix in ("tenants", f"tenants/{KEY}/x"):
        with pytest.raises(TalkstackError) as caught:
            folder.check_output(voice(prefix=prefix))
        assert answer(caught.value) == (
            400,
            {
                "code": "INVALID_REQUEST",
                "message": "output.prefix: that folder holds the API keys' outputs; choose another prefix",
                "details": {},
            },
        )
    folder.check_output(voice(prefix="tenantsx"))  # only the folder itself


@pytest.mark.parametrize(
    ("setting", "value", "area"),
    [
        ("read_grants", f"*=s3://{INPUT}/", "uploads/"),  # the whole input bucket: every key's uploads
        ("read_grants", f"keya=s3://{INPUT}/uploads/other/", "uploads/"),
        ("read_grants", f"drop:*=s3://{OUTPUT}/", "tenants/"),
        ("read_grants", f"keya=s3://{OUTPUT}/tenants/keyb/", "tenants/"),
        ("write_grants", f"*=s3://{INPUT}/inputs/", "inputs/"),  # an output planted in a drop folder
        ("write_grants", f"keya=s3://{OUTPUT}/", "tenants/"),
    ],
)
def test_no_grant_reaches_into_the_keys_uploads_outputs_or_the_drop_folders(
    no_pipeline_environment, setting, value, area
):
    with pytest.raises(ValidationError, match=f"overlaps s3://[a-z0-9.-]+/{area}"):
        make_config(**{setting: value})
    make_config(read_grants=f"*=s3://{INPUT}/library/", write_grants=f"keya=s3://{OUTPUT}/acme/")


@pytest.mark.parametrize("setting", ["read_grants", "write_grants"])
def test_no_grant_reaches_into_the_work_bucket(no_pipeline_environment, setting):
    with pytest.raises(ValidationError, match="is the work bucket"):
        make_config(**{setting: f"*=s3://{WORK}/work/"})


def test_the_drop_prefix_may_not_cover_the_uploads(no_pipeline_environment):
    for prefix in ("", "uploads/", "uploads/drops/"):
        with pytest.raises(ValidationError, match="TALKSTACK_INPUT_PREFIX"):
            make_config(input_prefix=prefix)


def test_a_drop_may_not_plant_files_where_a_write_grant_lets_keys_read_them_back(no_pipeline_environment):
    config = make_config(
        writable_buckets="shared-out", write_grants="keya=s3://shared-out/acme/,*=s3://shared-out/all/"
    )
    folder = Namespace.for_drop(INPUT, "inputs/talk/job.json", config)
    for prefix in ("acme", "acme/x", "all/tenants/keya"):
        with pytest.raises(TalkstackError, match="holds the API keys' outputs"):
            folder.check_output(voice(bucket="shared-out", prefix=prefix))
    folder.check_output(voice(bucket="shared-out", prefix="all/reports"))  # outside any key's folder
    folder.check_output(voice(bucket="shared-out"))  # the job-id folder at the root


def test_a_drop_to_its_job_id_folder_meets_a_keys_folder_only_when_that_is_the_whole_bucket(
    no_pipeline_environment,
):
    # No prefix: the job-id folder, which is no folder of a key's unless the key has the whole bucket
    # (least of all one whose folder happens to be called "None").
    config = make_config(
        writable_buckets="shared-out,acme-out", write_grants="keya=s3://shared-out/None/,keyb=s3://acme-out/"
    )
    folder = Namespace.for_drop(INPUT, "inputs/talk/job.json", config)

    folder.check_output(voice(bucket="shared-out"))
    folder.check_output(voice(bucket="shared-out", prefix="reports"))
    for output in (
        {"bucket": "acme-out"},
        {"bucket": "acme-out", "prefix": ""},
        {"bucket": "shared-out", "prefix": "None"},
    ):
        with pytest.raises(TalkstackError, match="holds the API keys' outputs"):
            folder.check_output(voice(**output))
