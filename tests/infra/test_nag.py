"""cdk-nag's AwsSolutions pack against the stack: clean, with every acknowledgment in nag.py."""

from __future__ import annotations

import json

import aws_cdk as cdk
from aws_cdk import aws_s3 as s3
from cdk_nag import AwsSolutionsChecks

from tests.support.cdk_synth import REPO, synth


def findings(report) -> list[str]:
    return sorted(
        f"{violation.rule_name} {resource.construct_path}"
        for violation in report.violations
        for resource in violation.violating_resources
    )


def fresh_stack():
    """A new app and stack (the cached synth must not get test-only constructs)."""
    from talkstack_cdk.settings import load_settings
    from talkstack_cdk.stack import TalkstackStack

    app = cdk.App(
        context={**json.loads((REPO / "cdk.json").read_text())["context"], "aws:cdk:bundling-stacks": []}
    )
    return app, TalkstackStack(app, "talkstack", settings=load_settings({}, environ={}))


def test_stack_passes_aws_solutions_checks():
    s = synth()
    report = AwsSolutionsChecks(s.app).validate_scope(s.app)
    assert findings(report) == []
    assert report.success


def test_stack_with_extra_buckets_and_an_alarm_email_passes_too():
    s = synth(**{"talkstack:readableBuckets": "media-library", "talkstack:alarmEmail": "ops@example.com"})
    assert findings(AwsSolutionsChecks(s.app).validate_scope(s.app)) == []


def test_stack_with_read_and_write_grants_passes_too():
    """Each granted prefix is acknowledged on exactly the roles permissions.py granted it to."""
    s = synth(
        **{
            "talkstack:readGrants": "k1=s3://media-library/k1/,*=s3://shared-assets/,drop:team=s3://media-library/team/",
            "talkstack:writeGrants": "k1=s3://customer-out/k1/,*=s3://shared-out/renders/",
            "talkstack:writableBuckets": "customer-out",
        }
    )
    assert findings(AwsSolutionsChecks(s.app).validate_scope(s.app)) == []


def test_the_checks_do_catch_an_insecure_resource():
    """Proof the pack is live: an unencrypted, logless, plain-HTTP bucket is reported."""

    app, stack = fresh_stack()
    s3.Bucket(stack, "Careless")
    report = AwsSolutionsChecks(app).validate_scope(app)
    found = findings(report)
    assert "AwsSolutions-S1 talkstack/Careless/Resource" in found
    assert "AwsSolutions-S10 talkstack/Careless/Resource" in found
    assert all("/Careless/" in finding for finding in found)  # and nothing else
    assert not report.success


def test_a_new_wildcard_on_a_role_is_not_silently_acknowledged():
    from aws_cdk import aws_iam as iam
    from talkstack_cdk.nag import logical_id

    app, stack = fresh_stack()
    stack.functions.roles["plan"].add_to_principal_policy(
        iam.PolicyStatement(actions=["s3:*"], resources=[stack.storage.output_bucket.arn_for_objects("*")])
    )
    found = findings(AwsSolutionsChecks(app).validate_scope(app))
    # The action wildcard, and the object wildcard too: plan was never granted outputs/*.
    assert found == [
        "AwsSolutions-IAM5[Action::s3:*] talkstack/Functions/PlanRole/DefaultPolicy/Resource",
        f"AwsSolutions-IAM5[Resource::<{logical_id(stack.storage.output_bucket)}.Arn>/*] "
        "talkstack/Functions/PlanRole/DefaultPolicy/Resource",
    ]


def test_object_wildcards_are_acknowledged_only_for_the_role_that_was_granted_them():
    """The plan role has no S3 grant; giving it a read of outputs/* (which finalize may have) is a
    finding, not covered by another role's acknowledgment."""
    from aws_cdk import aws_iam as iam

    app, stack = fresh_stack()
    stack.functions.roles["plan"].add_to_principal_policy(
        iam.PolicyStatement(
            actions=["s3:GetObject"], resources=[stack.storage.output_bucket.arn_for_objects("*")]
        )
    )
    found = findings(AwsSolutionsChecks(app).validate_scope(app))
    assert len(found) == 1 and found[0].startswith("AwsSolutions-IAM5[Resource::<StorageOutputs")
    assert found[0].endswith("talkstack/Functions/PlanRole/DefaultPolicy/Resource")
