"""Tenant namespaces at their edges, one rule per test, each written so that flipping or dropping
the comparison it guards (a mutation probe of talkstack.pipeline.tenancy) makes it fail: the bucket
half of every area, folder names that merely start alike, whose grant comes first, and each kind
of job's source."""

from __future__ import annotations

from typing import Any

import pytest

from talkstack.contract.fields import MediaRef
from talkstack.contract.parse import parse_job_request
from talkstack.contract.record import JobSource
from talkstack.errors import TalkstackError
from talkstack.pipeline.tenancy import Namespace
from tests.support.steps import INPUT, OUTPUT, make_config

KEY, OTHER = "keya", "keyb"


def readable(namespace: Namespace, *urls: str) -> list[bool]:
    return [namespace.may_read(MediaRef.parse(url)) for url in urls]


def voice(**output: Any) -> Any:
    return parse_job_request({"task": "voice", "inputs": {"text": "hi"}, "output": output})


def test_an_area_is_its_bucket_and_its_prefix_both(config):
    # The same key in another bucket is not the key's upload, nor the drop folder's file
    mine = Namespace.for_key(KEY, config)
    folder = Namespace.for_drop(INPUT, "inputs/talk/job.json", config)

    assert readable(mine, f"s3://{INPUT}/uploads/{KEY}/upl_1/a.wav") == [True]
    assert readable(
        mine, f"s3://elsewhere/uploads/{KEY}/upl_1/a.wav", f"s3://{INPUT}/tenants/{KEY}/a.wav"
    ) == [
        False,
        False,
    ]
    assert readable(folder, f"s3://{INPUT}/inputs/talk/a.wav", f"s3://{OUTPUT}/inputs/talk/a.wav") == [
        True,
        False,
    ]


def test_a_key_never_reads_the_outputs_of_a_key_whose_id_starts_alike(config):
    mine = Namespace.for_key(KEY, config)

    assert readable(
        mine, f"s3://{OUTPUT}/tenants/{KEY}/v-1/a.wav", f"s3://{OUTPUT}/tenants/{KEY}x/v-1/a.wav"
    ) == [
        True,
        False,
    ]


def test_a_shared_write_grant_gives_each_key_its_own_subfolder_to_read(no_pipeline_environment):
    # Given a write grant to every key: each key publishes (and reads back) under tenants/<key>/ there
    config = make_config(write_grants="*=s3://shared-out/all/")
    mine, theirs = Namespace.for_key(KEY, config), Namespace.for_key(OTHER, config)
    own = f"s3://shared-out/all/tenants/{KEY}/v-1/a.wav"

    # Then the key reads its own subfolder, and no other key reads it
    assert readable(mine, own) == [True] and readable(theirs, own) == [False]
    assert readable(mine, "s3://shared-out/all/report.wav") == [False]


def test_a_keys_own_write_grant_comes_before_the_shared_one_in_the_same_bucket(no_pipeline_environment):
    config = make_config(write_grants=f"{KEY}=s3://shared-out/acme/,*=s3://shared-out/all/")

    mine = Namespace.for_key(KEY, config).place_output(voice(bucket="shared-out", prefix="p"), "v-1")
    theirs = Namespace.for_key(OTHER, config).place_output(voice(bucket="shared-out", prefix="p"), "v-2")

    assert mine.output_key("v-1") == "acme/p/speech.wav"
    assert theirs.output_key("v-2") == f"all/tenants/{OTHER}/p/speech.wav"


def test_an_api_job_may_not_publish_in_a_folder_whose_name_merely_starts_like_its_own(config):
    namespace = Namespace.for_key(KEY, config)

    namespace.check_output(voice(bucket=OUTPUT, prefix=f"tenants/{KEY}/x"))  # its own
    for prefix in (f"tenants/{KEY}x/y", f"tenants/{KEY}x"):
        with pytest.raises(TalkstackError, match="its key's output folder"):
            namespace.check_output(voice(bucket=OUTPUT, prefix=prefix))


def test_an_api_jobs_stored_output_names_its_bucket(config):
    # place_output always writes the bucket; a request that arrives without one was not placed
    with pytest.raises(TalkstackError, match="its key's output folder"):
        Namespace.for_key(KEY, config).check_output(voice(prefix=f"tenants/{KEY}/x"))


def test_an_api_source_names_its_key(config):
    with pytest.raises(TalkstackError) as caught:
        Namespace.for_source(JobSource(kind="api"), config)

    assert caught.value.code == "INVALID_REQUEST" and "api_key_id" in caught.value.message


def test_a_drop_owns_its_folder_in_the_bucket_its_manifest_came_from(config):
    source = JobSource(kind="s3", bucket="another-in", key="inputs/talk/job.json")

    folder = Namespace.for_source(source, config)

    assert folder.kind == "drop" and folder.owner == "inputs/talk/"
    assert readable(folder, "s3://another-in/inputs/talk/a.wav", f"s3://{INPUT}/inputs/talk/a.wav") == [
        True,
        False,
    ]


def test_a_drop_may_use_a_keys_folder_name_in_a_bucket_no_key_publishes_to(no_pipeline_environment):
    # Only where the keys' outputs are (the output bucket's tenants/, the write grants) is refused
    config = make_config(writable_buckets="shared-out", write_grants=f"{KEY}=s3://shared-out/acme/")
    folder = Namespace.for_drop(INPUT, "inputs/talk/job.json", config)

    folder.check_output(voice(bucket="shared-out", prefix="tenants/x"))
    with pytest.raises(TalkstackError, match="holds the API keys' outputs"):
        folder.check_output(voice(prefix="tenants/x"))
