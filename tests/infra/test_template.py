"""The synthesized template's security and wiring, property by property."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from talkstack.api.usage import TIER_TAG
from talkstack.pipeline.backends import MODAL_TOKEN_PLACEHOLDER
from talkstack.pipeline.jobs_table import create_table_request, time_to_live_request
from tests.support.cdk_synth import REPO, synth

ASYNC_FUNCTIONS = {"ingest", "complete", "notify", "audit_export"}
HANDLER_MODULES = {p.stem for p in (REPO / "aws" / "lambda").glob("*.py")}


@pytest.fixture(scope="module")
def s():
    return synth()


def functions_by_name(s) -> dict[str, tuple[str, dict]]:
    """handler module -> (logical id, properties)."""
    return {
        props["Properties"]["Handler"].split(".")[0]: (lid, props["Properties"])
        for lid, props in s.resources("AWS::Lambda::Function").items()
        if props["Properties"].get("Handler", "").endswith(".handler")
        and props["Properties"]["Handler"].split(".")[0] in HANDLER_MODULES
    }


def role_statements(s, role_logical_id: str) -> list[dict]:
    statements = []
    for policy in s.resources("AWS::IAM::Policy").values():
        if {"Ref": role_logical_id} in policy["Properties"]["Roles"]:
            statements += policy["Properties"]["PolicyDocument"]["Statement"]
    return statements


def as_list(value) -> list:
    return value if isinstance(value, list) else [value]


def text(value) -> str:
    return json.dumps(value, sort_keys=True)


# --- storage -------------------------------------------------------------------------------------


def test_every_bucket_blocks_public_access_is_encrypted_and_tls_only(s):
    buckets = s.resources("AWS::S3::Bucket")
    assert len(buckets) == 5  # inputs, work, outputs, audit exports, access logs
    policies = {p["Properties"]["Bucket"]["Ref"]: p for p in s.resources("AWS::S3::BucketPolicy").values()}
    for lid, bucket in buckets.items():
        props = bucket["Properties"]
        assert props["PublicAccessBlockConfiguration"] == {
            "BlockPublicAcls": True,
            "BlockPublicPolicy": True,
            "IgnorePublicAcls": True,
            "RestrictPublicBuckets": True,
        }
        sse = props["BucketEncryption"]["ServerSideEncryptionConfiguration"][0]
        assert sse["ServerSideEncryptionByDefault"]["SSEAlgorithm"] == "AES256"
        denies = [
            st
            for st in policies[lid]["Properties"]["PolicyDocument"]["Statement"]
            if st["Effect"] == "Deny" and st["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}
        ]
        assert denies and denies[0]["Action"] == "s3:*" and denies[0]["Principal"] == {"AWS": "*"}


def test_data_buckets_log_access_and_expire_per_settings(s):
    storage = s.stack.storage
    logs_bucket = s.logical_id(storage.access_logs)
    rules = {}
    for name, bucket in {
        "inputs": storage.input_bucket,
        "work": storage.work_bucket,
        "outputs": storage.output_bucket,
        "audit": storage.audit_bucket,
    }.items():
        props = s.template["Resources"][s.logical_id(bucket)]["Properties"]
        assert props["LoggingConfiguration"]["DestinationBucketName"] == {"Ref": logs_bucket}
        rules[name] = {
            r.get("Prefix", ""): r.get("ExpirationInDays") for r in props["LifecycleConfiguration"]["Rules"]
        }
    assert rules["work"] == {
        "": None,
        "work/": 1,
        "markers/": 1,
        "control/": 1,
        "held/": 1,
    }  # "" = abort multipart
    assert rules["inputs"] == {"": None, "inputs/": 7, "uploads/": 7}  # voice samples: 7 days
    assert rules["outputs"] == {"": 1}  # generated videos: 24 hours, S3's smallest unit
    assert rules["audit"] == {"": None, "audit/": 365}  # the daily exports live a year by default

    custom = synth(**{"talkstack:outputRetentionDays": "0", "talkstack:inputRetentionDays": "2"})
    out = custom.template["Resources"][custom.logical_id(custom.stack.storage.output_bucket)]["Properties"]
    assert [r.get("ExpirationInDays") for r in out["LifecycleConfiguration"]["Rules"]] == [None]
    inp = custom.template["Resources"][custom.logical_id(custom.stack.storage.input_bucket)]["Properties"]
    assert {r.get("Prefix"): r.get("ExpirationInDays") for r in inp["LifecycleConfiguration"]["Rules"]}[
        "inputs/"
    ] == 2


@pytest.mark.parametrize(
    "context",
    [{}, {"talkstack:outputRetentionDays": "3", "talkstack:recordRetentionDays": "10",
          "talkstack:uploadRetentionDays": "2", "talkstack:auditRetentionDays": "0"}],
)  # fmt: skip
def test_lifecycle_rules_ttls_and_the_handlers_settings_agree_with_the_retention_settings(
    context, no_pipeline_environment
):
    """One source: the deploy settings (whose defaults are the plan's) make the buckets' expiry
    rules, the table's TTL attribute is the one the handlers write, and every handler gets the same
    numbers for the TTLs it writes (records, uploads, audit entries)."""
    from talkstack.pipeline import jobs_table
    from talkstack.pipeline.config import PipelineConfig
    from talkstack.pipeline.retention import Retention
    from talkstack.settings import retention as plan

    built = synth(**context)
    settings = built.stack.settings
    if not context:
        assert (settings.output_retention_days, settings.upload_retention_days) == (1, 7)
        assert (settings.input_retention_days, settings.record_retention_days) == (7, 30)
        assert Retention.of(settings) == Retention()  # the deploy's defaults are the plan's
        assert plan.OUTPUT_RETENTION_DAYS == 1 and plan.RECORD_RETENTION_DAYS == 30
    expected = Retention.of(settings).bucket_rules()
    storage = built.stack.storage
    buckets = {
        "input": storage.input_bucket,
        "work": storage.work_bucket,
        "output": storage.output_bucket,
        "audit": storage.audit_bucket,
    }
    for role, bucket in buckets.items():
        rules = built.template["Resources"][built.logical_id(bucket)]["Properties"]["LifecycleConfiguration"]
        found = {
            (r.get("Prefix", ""), r["ExpirationInDays"]) for r in rules["Rules"] if "ExpirationInDays" in r
        }
        assert found == {(rule.prefix, rule.days) for rule in expected[role]}, role
    table = next(iter(built.resources("AWS::DynamoDB::GlobalTable").values()))["Properties"]
    assert table["TimeToLiveSpecification"] == {"AttributeName": jobs_table.TTL_ATTRIBUTE, "Enabled": True}
    fields = ("record", "upload", "audit", "output")
    for name, (_, props) in functions_by_name(built).items():
        env = props["Environment"]["Variables"]
        for field in (f"{kind}_retention_days" for kind in fields):
            assert env[f"TALKSTACK_{field.upper()}"] == str(getattr(settings, field)), (name, field)
    # A handler configured by nothing (the local stack's defaults) writes the plan's TTLs too.
    defaults = PipelineConfig.model_fields
    for field in (f"{kind}_retention_days" for kind in fields):
        assert defaults[field].default == getattr(Retention(), field), field


def test_manifest_and_marker_notifications_reach_ingest_and_complete(s):
    fns = functions_by_name(s)
    configs = {}
    for resource in s.resources("Custom::S3BucketNotifications").values():
        bucket = resource["Properties"]["BucketName"]["Ref"]
        for config in resource["Properties"]["NotificationConfiguration"]["LambdaFunctionConfigurations"]:
            rules = {r["Name"]: r["Value"] for r in config["Filter"]["Key"]["FilterRules"]}
            configs[bucket] = (config["LambdaFunctionArn"]["Fn::GetAtt"][0], config["Events"], rules)
    storage = s.stack.storage
    assert configs[s.logical_id(storage.input_bucket)] == (
        fns["ingest"][0],
        ["s3:ObjectCreated:*"],
        {"prefix": "inputs/", "suffix": "job.json"},
    )
    assert configs[s.logical_id(storage.work_bucket)] == (
        fns["complete"][0],
        ["s3:ObjectCreated:*"],
        {"prefix": "markers/"},
    )


def test_jobs_table_has_the_shape_the_local_stack_creates(s):
    """The deployed table and the emulated one are built from one definition (jobs_table.py)."""
    (table,) = s.resources("AWS::DynamoDB::GlobalTable").values()
    props = table["Properties"]
    request = create_table_request("any")
    assert props["KeySchema"] == request["KeySchema"]
    assert sorted(props["AttributeDefinitions"], key=lambda a: a["AttributeName"]) == sorted(
        request["AttributeDefinitions"], key=lambda a: a["AttributeName"]
    )
    assert props["GlobalSecondaryIndexes"] == request["GlobalSecondaryIndexes"]
    assert props["BillingMode"] == request["BillingMode"]
    assert props["TimeToLiveSpecification"] == time_to_live_request("any")["TimeToLiveSpecification"]


def test_jobs_table_has_ttl_pitr_and_the_owner_index(s):
    (table,) = s.resources("AWS::DynamoDB::GlobalTable").values()
    props = table["Properties"]
    assert props["TimeToLiveSpecification"] == {"AttributeName": "expires_at", "Enabled": True}
    replica = props["Replicas"][0]
    assert replica["PointInTimeRecoverySpecification"]["PointInTimeRecoveryEnabled"] is True
    assert replica["DeletionProtectionEnabled"] is True
    assert props["SSESpecification"]["SSEEnabled"] is True
    (index,) = props["GlobalSecondaryIndexes"]
    assert index["IndexName"] == "by-owner"
    assert index["KeySchema"] == [
        {"AttributeName": "owner", "KeyType": "HASH"},
        {"AttributeName": "created_at", "KeyType": "RANGE"},
    ]
    assert table["DeletionPolicy"] == "Retain"
    assert (
        synth(**{"talkstack:retainData": "false"})
        .resources("AWS::DynamoDB::GlobalTable")
        .popitem()[1]["DeletionPolicy"]
        == "Delete"
    )


def test_topics_are_kms_encrypted_and_tls_only_and_the_key_rotates(s):
    (key_id,) = s.resources("AWS::KMS::Key")
    assert s.template["Resources"][key_id]["Properties"]["EnableKeyRotation"] is True
    topics = s.resources("AWS::SNS::Topic")
    assert len(topics) == 2  # job events, alarms
    for topic in topics.values():
        assert topic["Properties"]["KmsMasterKeyId"] == {"Fn::GetAtt": [key_id, "Arn"]}
    for policy in s.resources("AWS::SNS::TopicPolicy").values():
        statements = policy["Properties"]["PolicyDocument"]["Statement"]
        assert any(st["Effect"] == "Deny" and "aws:SecureTransport" in text(st) for st in statements)


def test_queues_are_encrypted_tls_only_and_alarmed(s):
    queues = s.resources("AWS::SQS::Queue")
    assert len(queues) == 5  # ingest refusals + DLQs of the four async functions
    for queue in queues.values():
        assert queue["Properties"]["SqsManagedSseEnabled"] is True
        assert queue["Properties"]["MessageRetentionPeriod"] == 14 * 24 * 3600
    for policy in s.resources("AWS::SQS::QueuePolicy").values():
        statements = policy["Properties"]["PolicyDocument"]["Statement"]
        assert any(st["Effect"] == "Deny" and "aws:SecureTransport" in text(st) for st in statements)
    alarmed = {
        a["Properties"]["Dimensions"][0]["Value"]["Fn::GetAtt"][0]
        for a in s.resources("AWS::CloudWatch::Alarm").values()
        if a["Properties"].get("MetricName") == "ApproximateNumberOfMessagesVisible"
    }
    assert alarmed == set(queues)


# --- functions -----------------------------------------------------------------------------------


def test_one_function_per_handler_module_arm64_current_python_traced(s):
    fns = functions_by_name(s)
    assert set(fns) == HANDLER_MODULES
    roles = set()
    for name, (_, props) in fns.items():
        assert props["Runtime"] == "python3.14", name
        assert props["Architectures"] == ["arm64"], name
        assert props["TracingConfig"] == {"Mode": "Active"}, name
        assert props["FunctionName"] == f"talkstack-{name}"
        assert len(props["Layers"]) == 1
        roles.add(props["Role"]["Fn::GetAtt"][0])
    assert len(roles) == len(fns)  # a role per function
    for role_id in roles:
        role = s.template["Resources"][role_id]["Properties"]
        assert "ManagedPolicyArns" not in role  # no AWS-managed policy, logs included


def test_async_functions_have_dead_letter_queues_and_bounded_retries(s):
    fns = functions_by_name(s)
    queues = s.resources("AWS::SQS::Queue")
    configs = {
        c["Properties"]["FunctionName"]["Ref"]: c["Properties"]
        for c in s.resources("AWS::Lambda::EventInvokeConfig").values()
    }
    for name, (lid, props) in fns.items():
        if name in ASYNC_FUNCTIONS:
            target = props["DeadLetterConfig"]["TargetArn"]["Fn::GetAtt"][0]
            assert target in queues
            assert configs[lid]["MaximumRetryAttempts"] == 2
            assert configs[lid]["MaximumEventAgeInSeconds"] == (3600 if name == "notify" else 6 * 3600)
        else:
            assert "DeadLetterConfig" not in props, name


def test_reserved_concurrency_guards_the_gpu_budget(s):
    fns = functions_by_name(s)
    assert fns["dispatch"][1]["ReservedConcurrentExecutions"] == 20
    assert fns["ingest"][1]["ReservedConcurrentExecutions"] == 10
    unreserved = functions_by_name(synth(**{"talkstack:dispatchConcurrency": "0"}))
    assert "ReservedConcurrentExecutions" not in unreserved["dispatch"][1]


def test_notify_is_bounded_in_concurrency_retries_and_time(s):
    from talkstack.pipeline.config import MAX_DELIVERY_DEADLINE_S

    fns = functions_by_name(s)
    _, notify = fns["notify"]
    assert notify["ReservedConcurrentExecutions"] == 20
    # Every delivery ends within its deadline, and the longest deadline allowed leaves notify a
    # minute for SNS and the table before its timeout.
    assert notify["Timeout"] >= MAX_DELIVERY_DEADLINE_S + 60
    unreserved = functions_by_name(synth(**{"talkstack:notifyConcurrency": "0"}))
    assert "ReservedConcurrentExecutions" not in unreserved["notify"][1]


def test_every_function_gets_a_complete_pipeline_configuration(s, no_pipeline_environment):
    from talkstack.pipeline.config import PipelineConfig

    for name, (_, props) in functions_by_name(s).items():
        env = props["Environment"]["Variables"]
        assert env["TALKSTACK_WORKER_BACKEND"] == "modal"
        # Requests that name no model get GPU models: the lite ones do not run in AWS.
        assert env["TALKSTACK_DEFAULT_MODELS"] == "avatar=multitalk,voice=chatterbox,video=ltx-video"
        assert env["TALKSTACK_RECORD_RETENTION_DAYS"] == "30"  # records expire unless configured
        assert env["TALKSTACK_AUDIT_RETENTION_DAYS"] == "365"
        assert env["TALKSTACK_AUDIT_BUCKET"] == {"Ref": s.logical_id(s.stack.storage.audit_bucket)}
        assert "TALKSTACK_WEBHOOK_SECRET" not in env  # the secret stays in Secrets Manager
        assert env["TALKSTACK_WEBHOOK_SECRET_ID"] == {"Ref": s.logical_id(s.stack.webhook_secret)}
        assert env["TALKSTACK_MODAL_TOKEN_SECRET"] == {"Ref": s.logical_id(s.stack.modal_token)}
        # Tokens become strings; what matters is that every required field is set.
        strings = {
            k[len("TALKSTACK_") :].lower(): v if isinstance(v, str) else text(v)
            for k, v in env.items()
            if k.startswith("TALKSTACK_")
        }
        assert PipelineConfig.model_validate(strings).default_model("avatar") == "multitalk"
        assert env["TALKSTACK_NOTIFY_FUNCTION"] == "talkstack-notify", name


# --- least privilege -----------------------------------------------------------------------------


def test_no_wildcard_actions_and_resource_star_only_where_aws_requires_it(s):
    for lid, policy in s.resources("AWS::IAM::Policy").items():
        if lid.startswith("BucketNotificationsHandler"):
            continue  # CDK's own deploy-time helper (acknowledged in nag.py)
        for st in policy["Properties"]["PolicyDocument"]["Statement"]:
            actions = as_list(st["Action"])
            assert "*" not in actions, lid
            for action in actions:
                _, _, verb = action.partition(":")
                assert "*" not in verb, (lid, action)
            if st["Resource"] == "*":
                assert all(a.split(":")[0] in ("xray", "logs") for a in actions), (lid, actions)


def test_function_roles_touch_only_the_buckets_and_prefixes_they_need(s):
    fns = functions_by_name(s)
    storage = s.stack.storage
    ids = {
        s.logical_id(b): n
        for b, n in [
            (storage.input_bucket, "inputs"),
            (storage.work_bucket, "work"),
            (storage.output_bucket, "outputs"),
            (storage.audit_bucket, "audit"),
        ]
    }

    def s3_grants(name):
        grants = set()
        role = fns[name][1]["Role"]["Fn::GetAtt"][0]
        for st in role_statements(s, role):
            for action in as_list(st["Action"]):
                if not action.startswith("s3:"):
                    continue
                for resource in as_list(st["Resource"]):
                    parts = (
                        resource["Fn::Join"][1]
                        if isinstance(resource, dict) and "Fn::Join" in resource
                        else [resource]
                    )
                    bucket = next(
                        ids[p["Fn::GetAtt"][0]] for p in parts if isinstance(p, dict) and "Fn::GetAtt" in p
                    )
                    suffix = "".join(p for p in parts if isinstance(p, str))
                    grants.add((action, bucket, suffix))
        return grants

    assert s3_grants("ingest") == {("s3:GetObject", "inputs", "/inputs/*")}
    assert s3_grants("plan") == set() and s3_grants("notify") == set() and s3_grants("authorizer") == set()
    dispatch = s3_grants("dispatch")
    assert {a for a, _, _ in dispatch} == {"s3:GetObject", "s3:PutObject"}  # never deletes
    assert ("s3:PutObject", "work", "/markers/*") in dispatch
    assert not any(a == "s3:PutObject" and b != "work" for a, b, _ in dispatch)
    api = s3_grants("api")
    assert {(a, b, p) for a, b, p in api if a == "s3:PutObject"} == {
        ("s3:PutObject", "inputs", "/uploads/*"),
        ("s3:PutObject", "inputs", "/templates/*"),  # each key's own templates
        ("s3:PutObject", "inputs", "/assets/bundled/*"),  # bundled template media, copied in once
        ("s3:PutObject", "work", "/control/*"),
    }
    assert ("s3:DeleteObject", "inputs", "/templates/*") in api
    # the audit export writes its files and nothing else; nothing else writes the audit bucket
    assert s3_grants("audit_export") == {("s3:PutObject", "audit", "/audit/*")}
    assert not any(b == "audit" for name in fns if name != "audit_export" for _, b, _ in s3_grants(name))
    export_role = fns["audit_export"][1]["Role"]["Fn::GetAtt"][0]
    table_actions = {
        a
        for st in role_statements(s, export_role)
        for a in as_list(st["Action"])
        if a.startswith("dynamodb:")
    }
    assert table_actions == {"dynamodb:Query"}  # reads the day's partition; writes no item
    # a failed job stops its workers: fail raises the cancel flag (and nothing else in the work bucket)
    fail = s3_grants("fail")
    assert {(a, b, p) for a, b, p in fail if b == "work"} == {("s3:PutObject", "work", "/control/*")}
    finalize = s3_grants("finalize")
    assert ("s3:PutObject", "outputs", "/*") in finalize and ("s3:GetObject", "work", "/work/*") in finalize
    assert not any(b == "inputs" for _, b, _ in finalize)


# boto3 DynamoDB calls → the IAM actions AWS checks (TransactWriteItems: one per item kind in it).
DDB_ACTIONS = {
    "get_item": {"dynamodb:GetItem"},
    "batch_get_item": {"dynamodb:BatchGetItem"},
    "put_item": {"dynamodb:PutItem"},
    "update_item": {"dynamodb:UpdateItem"},
    "delete_item": {"dynamodb:DeleteItem"},
    "query": {"dynamodb:Query"},
}
TRANSACT_ITEMS = {
    "Put": "dynamodb:PutItem",
    "Update": "dynamodb:UpdateItem",
    "Delete": "dynamodb:DeleteItem",
    "ConditionCheck": "dynamodb:ConditionCheckItem",
}
# Powertools' idempotency layer (the API's Idempotency-Key): its documented IAM actions.
IDEMPOTENCY_ACTIONS = {"dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:UpdateItem", "dynamodb:DeleteItem"}


def table_calls_in_the_code() -> set[str]:
    """The IAM actions of every jobs-table call the Lambdas' code makes (talkstack/, but not the
    CLI or the local stack, which run with the operator's credentials)."""
    needed: set[str] = set()
    for path in (REPO / "talkstack").rglob("*.py"):
        if path.relative_to(REPO / "talkstack").parts[0] in ("cli", "local"):
            continue
        source = path.read_text(encoding="utf-8")
        calls = set(re.findall(r"\bddb\.(\w+)\(", source))
        calls |= set(re.findall(r"\bddb\.get_paginator\(\"(\w+)\"\)", source))
        calls.discard("get_paginator")
        if "transact_write_items" in calls:
            calls.discard("transact_write_items")
            kinds = set(re.findall(r"\{\s*\"(Put|Update|Delete|ConditionCheck)\"\s*:", source))
            if "self.audit.puts(" in source or "self.puts(" in source:
                kinds.add("Put")
            assert kinds, f"{path}: a TransactWriteItems whose item kinds this test cannot see"
            needed |= {TRANSACT_ITEMS[k] for k in kinds}
        unknown = calls - set(DDB_ACTIONS)
        assert not unknown, f"{path}: map {sorted(unknown)} to IAM actions in DDB_ACTIONS"
        for call in calls:
            needed |= DDB_ACTIONS[call]
    return needed


def test_pipeline_roles_may_make_every_table_call_the_code_makes(s):
    """Webhook endpoints, audit entries, quota counters, CURRENT# attempts, delivery claims and
    per-key idempotency partitions all live in the jobs table; every call the code makes on it
    (TransactWriteItems with ConditionCheck included) must be allowed to the roles that run it."""
    needed = table_calls_in_the_code()
    assert {"dynamodb:ConditionCheckItem", "dynamodb:Query", "dynamodb:PutItem"} <= needed
    table = {"Fn::GetAtt": [next(iter(s.resources("AWS::DynamoDB::GlobalTable"))), "Arn"]}
    for name, statements in statements_by_role(s).items():
        on_table = {
            action
            for st in statements
            if table in as_list(st["Resource"])
            for action in as_list(st["Action"])
        }
        if name == "authorizer":
            assert on_table == {"dynamodb:GetItem"}  # looks a key up, nothing else
        elif name == "audit_export":
            assert on_table == {"dynamodb:Query"}  # reads a day's partition
        else:
            assert needed | IDEMPOTENCY_ACTIONS <= on_table, (name, needed - on_table)


def test_extra_buckets_get_the_same_narrow_statements():
    custom = synth(
        **{"talkstack:readableBuckets": "media-library", "talkstack:writableBuckets": "customer-out"}
    )
    body = text(custom.template)
    assert "s3:::media-library/*" in body and "s3:::customer-out/*" in body
    env = functions_by_name(custom)["validate"][1]["Environment"]["Variables"]
    assert env["TALKSTACK_READABLE_BUCKETS"] == "media-library"
    assert env["TALKSTACK_WRITABLE_BUCKETS"] == "customer-out"


def statements_by_role(s) -> dict[str, list[dict]]:
    return {
        name: role_statements(s, props["Role"]["Fn::GetAtt"][0])
        for name, (_, props) in functions_by_name(s).items()
    }


def grants_of(statements: list[dict], action: str) -> list:
    """Every resource a role's statements allow `action` on (conditions must be absent)."""
    found = []
    for st in statements:
        if action in as_list(st["Action"]):
            assert "Condition" not in st, st  # S3 decides 404 vs 403 by ListBucket on the bucket
            found += as_list(st["Resource"])
    return found


def test_every_head_that_must_tell_missing_from_forbidden_has_list_bucket(s):
    """A HEAD of a missing key is a 403 without s3:ListBucket on the bucket (HeadObject API
    reference). finalize reads a 404 as "free" (outputs.claim), a cancel or failure as "nothing to
    take back" (remove_published), validate and the API as INPUT_NOT_FOUND (check_media): each
    would fail, or answer INPUT_FORBIDDEN, on a 403."""
    storage = s.stack.storage
    outputs = {"Fn::GetAtt": [s.logical_id(storage.output_bucket), "Arn"]}
    inputs = {"Fn::GetAtt": [s.logical_id(storage.input_bucket), "Arn"]}
    roles = statements_by_role(s)
    for name in ("finalize", "fail", "api", "validate"):
        assert outputs in grants_of(roles[name], "s3:ListBucket"), name
    for name in ("api", "validate"):
        assert inputs in grants_of(roles[name], "s3:ListBucket"), name
    # finalize HEADs its targets before it writes (it was granted only writes before: every
    # HeadObject in the output bucket was a 403 in AWS)
    output_objects = {"Fn::Join": ["", [outputs, "/*"]]}
    assert output_objects in grants_of(roles["finalize"], "s3:GetObject")
    # and nothing that never HEADs the output bucket can list it
    for name in ("plan", "notify", "ingest", "complete", "segment", "dispatch", "authorizer", "audit_export"):
        assert outputs not in grants_of(roles[name], "s3:ListBucket"), name


def test_a_keys_own_outputs_are_readable_by_the_roles_that_read_inputs(s):
    """An API key may name its own outputs (`tenants/<key id>/…`) as inputs (tenancy.py): the API
    and validate HEAD them, segment downloads speech, dispatch pre-signs GETs."""
    tenants = {
        "Fn::Join": ["", [{"Fn::GetAtt": [s.logical_id(s.stack.storage.output_bucket), "Arn"]}, "/tenants/*"]]
    }
    roles = statements_by_role(s)
    readers = {name for name, sts in roles.items() if tenants in grants_of(sts, "s3:GetObject")}
    assert readers == {"api", "validate", "segment", "dispatch"}


GRANTS = {
    "talkstack:readGrants": "k1=s3://media-library/k1/,*=s3://shared-assets/,drop:team=s3://media-library/team/",
    "talkstack:writeGrants": "k1=s3://customer-out/k1/,*=s3://shared-out/renders/",
}


def test_read_and_write_grants_reach_the_functions_and_their_roles_exactly():
    custom = synth(**GRANTS)
    for name, (_, props) in functions_by_name(custom).items():
        env = props["Environment"]["Variables"]
        assert env["TALKSTACK_READ_GRANTS"] == (
            "k1=s3://media-library/k1/,*=s3://shared-assets/,drop:team=s3://media-library/team/"
        ), name
        assert env["TALKSTACK_WRITE_GRANTS"] == "k1=s3://customer-out/k1/,*=s3://shared-out/renders/"
    roles = statements_by_role(custom)

    def arns(name: str, action: str) -> set[str]:
        return {
            "".join(p if isinstance(p, str) else "" for p in r["Fn::Join"][1])
            for r in grants_of(roles[name], action)
            if isinstance(r, dict) and "Fn::Join" in r and "s3:::" in text(r)
        }

    read = {"arn::s3:::media-library/k1/*", "arn::s3:::shared-assets/*", "arn::s3:::media-library/team/*"}
    written = {"arn::s3:::customer-out/k1/*", "arn::s3:::shared-out/renders/*"}
    for name in ("api", "validate", "segment", "dispatch"):  # a key reads back what it published
        assert arns(name, "s3:GetObject") == read | written, name
    for name in ("api", "validate"):  # HEADs there: a missing object must be a 404
        assert arns(name, "s3:ListBucket") >= {
            "arn::s3:::media-library",
            "arn::s3:::shared-assets",
            "arn::s3:::customer-out",
            "arn::s3:::shared-out",
        }
    for name in ("finalize", "fail"):
        assert arns(name, "s3:GetObject") == written and arns(name, "s3:DeleteObject") == written, name
        assert arns(name, "s3:ListBucket") == {"arn::s3:::customer-out", "arn::s3:::shared-out"}, name
    assert arns("finalize", "s3:PutObject") == written
    assert arns("api", "s3:DeleteObject") == written  # a cancel takes back what finalize published
    # nobody else touches a granted location, and nobody writes where only reads were granted
    for name in ("plan", "notify", "ingest", "complete", "authorizer", "audit_export"):
        assert not any(arns(name, a) for a in ("s3:GetObject", "s3:PutObject", "s3:ListBucket")), name
    for name in roles:
        assert not (arns(name, "s3:PutObject") | arns(name, "s3:DeleteObject")) & read, name


def test_grants_too_long_for_lambdas_environment_fail_synth():
    """Lambda refuses an environment over 4 KB at deploy time; synth says which settings to shorten."""
    many = ",".join(f"key{i:09d}=s3://media-library-{i:04d}/tenant-{i:04d}/" for i in range(80))
    with pytest.raises(ValueError, match="over Lambda's 4096; shorten talkstack:readGrants"):
        synth(**{"talkstack:readGrants": many})


@pytest.mark.parametrize(
    ("context", "message"),
    [
        ({"talkstack:writeGrants": "drop:team=s3://customer-out/"}, "write grants are for API keys"),
        ({"talkstack:readGrants": "k1=customer-out/x/"}, "s3://bucket/"),
        ({"talkstack:readGrants": "Bad Key=s3://customer-out/"}, "grantee"),
    ],
)
def test_bad_grants_fail_synth_with_the_setting_named(context, message):
    from talkstack_cdk.settings import load_settings

    with pytest.raises(ValueError, match=re.escape(message)):
        load_settings(context, environ={})


def test_the_lambdas_plan_within_the_timeouts_the_modal_apps_were_deployed_with(monkeypatch):
    """Plan bounds step timeouts and URL lifetimes by the Modal classes' timeouts, which it reads
    from TALKSTACK_<FAMILY>_TIMEOUT_S (get_modal_deploy): the stack passes what `modal deploy` got."""
    from talkstack_cdk.settings import load_settings

    from talkstack.settings import ModalDeploySettings

    defaults = ModalDeploySettings()
    env = functions_by_name(synth())["plan"][1]["Environment"]["Variables"]
    for family in ("avatar", "stitch", "video", "voice", "compose", "matte"):
        assert env[f"TALKSTACK_{family.upper()}_TIMEOUT_S"] == str(defaults.timeout_s(family))

    custom = functions_by_name(synth(**{"talkstack:avatarTimeoutS": "7200"}))
    for name in ("plan", "dispatch"):
        env = custom[name][1]["Environment"]["Variables"]
        for variable, value in env.items():
            monkeypatch.setenv(variable, value if isinstance(value, str) else text(value))
        assert ModalDeploySettings().timeout_s("avatar") == 7200  # parsed as the Lambda parses it
    # One shell for both deploys: `modal deploy`'s own variable is the stack's default ...
    assert load_settings({}, environ={"TALKSTACK_VIDEO_TIMEOUT_S": "3600"}).video_timeout_s == 3600
    # ... and a stack setting that disagrees with it fails synth instead of outliving the workers.
    with pytest.raises(ValueError, match="talkstack:voiceTimeoutS is 600 but TALKSTACK_VOICE_TIMEOUT_S"):
        load_settings({"talkstack:voiceTimeoutS": "600"}, environ={"TALKSTACK_VOICE_TIMEOUT_S": "1800"})
    with pytest.raises(ValueError, match="avatar_timeout_s"):
        load_settings({}, environ={"TALKSTACK_AVATAR_TIMEOUT_S": "0"})


def test_bucket_regions_reach_the_functions_that_pre_sign():
    custom = synth(**{"talkstack:bucketRegions": "media-hk=ap-east-1,media-eu=eu-west-1"})
    for handler in ("dispatch", "api"):
        env = functions_by_name(custom)[handler][1]["Environment"]["Variables"]
        assert env["TALKSTACK_BUCKET_REGIONS"] == "media-hk=ap-east-1,media-eu=eu-west-1"
    from talkstack_cdk.settings import load_settings

    with pytest.raises(ValueError, match="bucket_regions"):
        load_settings({"talkstack:bucketRegions": "media-hk=Hong Kong"}, environ={})


def test_the_chunk_rerender_setting_reaches_the_complete_lambda():
    from talkstack.settings.quality import QualityThresholds

    for context, expected in (({}, True), ({"talkstack:qualityRerenderChunks": "false"}, False)):
        env = functions_by_name(synth(**context))["complete"][1]["Environment"]["Variables"]
        # parsed the way the complete Lambda parses it
        assert (
            QualityThresholds(rerender_chunks=env["TALKSTACK_QUALITY_RERENDER_CHUNKS"]).rerender_chunks
            is expected
        )


def test_only_the_handlers_that_announce_events_may_invoke_notify(s):
    fns = functions_by_name(s)
    notify = fns["notify"][0]
    callers = set()
    for name, (_, props) in fns.items():
        for st in role_statements(s, props["Role"]["Fn::GetAtt"][0]):
            if "lambda:InvokeFunction" in as_list(st["Action"]):
                assert st["Resource"] == {"Fn::GetAtt": [notify, "Arn"]}  # unqualified: no ":*"
                callers.add(name)
    assert callers == {"api", "ingest", "validate", "dispatch", "complete"}


# --- state machine -------------------------------------------------------------------------------


def test_state_machine_is_the_asl_file_with_substitutions_logging_and_tracing(s):
    (sm,) = s.resources("AWS::StepFunctions::StateMachine").values()
    props = sm["Properties"]
    definition = (REPO / "aws" / "stepfunctions" / "job.asl.json").read_text(encoding="utf-8")
    assert props["DefinitionString"] == definition  # the file, byte for byte: no second copy
    placeholders = set(re.findall(r"\$\{(\w+)\}", definition))
    fns = functions_by_name(s)
    assert set(props["DefinitionSubstitutions"]) == placeholders
    for key, value in props["DefinitionSubstitutions"].items():
        name = key.removesuffix("FunctionArn").lower()
        assert value == {"Fn::GetAtt": [fns[name][0], "Arn"]}
    assert props["LoggingConfiguration"]["Level"] == "ALL"
    assert props["LoggingConfiguration"]["IncludeExecutionData"] is False
    assert props["TracingConfiguration"] == {"Enabled": True}
    assert props["StateMachineType"] == "STANDARD"
    # The state machine may invoke exactly the functions its definition names.
    invoked = [
        st["Resource"]
        for st in role_statements(s, props["RoleArn"]["Fn::GetAtt"][0])
        if "lambda:InvokeFunction" in as_list(st["Action"])
    ]
    assert sorted(text(r) for r in invoked[0]) == sorted(
        text(v) for v in props["DefinitionSubstitutions"].values()
    )


# --- REST API ------------------------------------------------------------------------------------


def test_rest_api_proxy_needs_a_key_public_routes_do_not(s):
    (api,) = s.resources("AWS::ApiGateway::RestApi").values()
    assert api["Properties"]["BinaryMediaTypes"] == ["multipart/form-data"]
    assert api["Properties"]["ApiKeySourceType"] == "AUTHORIZER"
    (authorizer,) = s.resources("AWS::ApiGateway::Authorizer").values()
    assert authorizer["Properties"]["Type"] == "REQUEST"
    assert authorizer["Properties"]["AuthorizerResultTtlInSeconds"] == 0
    assert functions_by_name(s)["authorizer"][0] in text(authorizer["Properties"]["AuthorizerUri"])
    paths = {r["Properties"]["PathPart"]: lid for lid, r in s.resources("AWS::ApiGateway::Resource").items()}
    methods = {
        m["Properties"]["ResourceId"]["Ref"]: m["Properties"]
        for m in s.resources("AWS::ApiGateway::Method").values()
    }
    proxy = methods[paths["{proxy+}"]]
    assert (
        proxy["HttpMethod"] == "ANY"
        and proxy["AuthorizationType"] == "CUSTOM"
        and proxy["ApiKeyRequired"] is True
    )
    assert proxy["Integration"]["Type"] == "AWS_PROXY"
    for public in ("health", "openapi.json", "docs"):
        assert methods[paths[public]]["AuthorizationType"] == "NONE"
        assert methods[paths[public]]["HttpMethod"] == "GET"


def test_stage_logs_traces_and_throttles_and_each_tier_has_a_usage_plan(s):
    from talkstack.api.keys import TIER_LIMITS

    (stage,) = s.resources("AWS::ApiGateway::Stage").values()
    props = stage["Properties"]
    assert props["TracingEnabled"] is True
    assert "DestinationArn" in props["AccessLogSetting"]
    (method_settings,) = props["MethodSettings"]
    assert method_settings["ThrottlingRateLimit"] == 50 and method_settings["ThrottlingBurstLimit"] == 100
    assert method_settings["DataTraceEnabled"] is False
    plans = {
        p["Properties"]["UsagePlanName"]: p["Properties"]
        for p in s.resources("AWS::ApiGateway::UsagePlan").values()
    }
    assert set(plans) == {f"talkstack-{tier}" for tier in TIER_LIMITS}
    for tier, limits in TIER_LIMITS.items():
        assert plans[f"talkstack-{tier}"]["Throttle"]["RateLimit"] == pytest.approx(
            limits.requests_per_minute / 60, abs=1e-3
        )
        # The tag `keys create --usage-plan` checks against the key's tier.
        assert {"Key": TIER_TAG, "Value": tier} in plans[f"talkstack-{tier}"]["Tags"]
    assert plans["talkstack-free"]["Quota"] == {"Limit": 5000, "Period": "MONTH"}
    assert "Quota" not in plans["talkstack-enterprise"]


# --- monitoring, secrets, outputs, settings ------------------------------------------------------


def test_alarms_cover_executions_lambda_errors_and_webhooks_and_a_dashboard_exists(s):
    alarms = [a["Properties"] for a in s.resources("AWS::CloudWatch::Alarm").values()]
    by_metric = {}
    for alarm in alarms:
        by_metric.setdefault(alarm["MetricName"], []).append(alarm)
        assert alarm["AlarmActions"], alarm["AlarmName"]
    assert {a["Namespace"] for a in by_metric["ExecutionsFailed"]} == {"AWS/States"}
    assert "ExecutionsTimedOut" in by_metric
    assert len(by_metric["Errors"]) == len(HANDLER_MODULES)
    (webhooks,) = by_metric["WebhookDeliveryFailures"]
    assert webhooks["Namespace"] == "talkstack"
    dashboards = s.resources("AWS::CloudWatch::Dashboard")
    body = text(next(iter(dashboards.values()))["Properties"]["DashboardBody"])
    for metric in ("GpuSeconds", "EstimatedCostUsd", "JobDuration", "JobsCompleted", "JobsFailed"):
        assert metric in body
    subscribed = synth(**{"talkstack:alarmEmail": "ops@example.com"}).resources("AWS::SNS::Subscription")
    assert [sub["Properties"]["Endpoint"] for sub in subscribed.values()] == ["ops@example.com"]


def test_secrets_are_generated_never_in_the_template(s):
    secrets = s.resources("AWS::SecretsManager::Secret")
    assert len(secrets) == 3  # the Modal token, the webhook signing secret, the C2PA signer
    for secret in secrets.values():
        assert "SecretString" not in secret["Properties"]
        assert "GenerateSecretString" in secret["Properties"]
    # The Modal token starts as the placeholder that dispatch recognises (and refuses, naming the fix).
    token = s.resources("AWS::SecretsManager::Secret")[s.logical_id(s.stack.modal_token)]
    generated = token["Properties"]["GenerateSecretString"]
    assert json.loads(generated["SecretStringTemplate"]) == {"token_id": MODAL_TOKEN_PLACEHOLDER}
    assert generated["GenerateStringKey"] == "token_secret"
    # The C2PA signer starts as a placeholder finalize reads as "no signer yet" (test certificate,
    # and a warning on every job), and only finalize may read it.
    from talkstack.safety.credentials import signer_from_secret

    signer = secrets[s.logical_id(s.stack.c2pa_signer)]["Properties"]["GenerateSecretString"]
    assert signer_from_secret(signer["SecretStringTemplate"]) is None


def test_the_audit_export_runs_daily_with_retries_and_a_dead_letter_queue(s):
    fns = functions_by_name(s)
    rules = s.resources("AWS::Events::Rule")
    assert len(rules) == 1
    rule = next(iter(rules.values()))["Properties"]
    assert rule["ScheduleExpression"] == "cron(15 0 * * ? *)" and rule["State"] == "ENABLED"
    (target,) = rule["Targets"]
    assert target["Arn"] == {"Fn::GetAtt": [fns["audit_export"][0], "Arn"]}
    assert target["RetryPolicy"]["MaximumRetryAttempts"] == 2
    assert target["DeadLetterConfig"]["Arn"]["Fn::GetAtt"][0] in s.resources("AWS::SQS::Queue")
    permissions = [
        p["Properties"]
        for p in s.resources("AWS::Lambda::Permission").values()
        if p["Properties"]["Principal"] == "events.amazonaws.com"
    ]
    assert [p["FunctionName"] for p in permissions] == [{"Fn::GetAtt": [fns["audit_export"][0], "Arn"]}]


def test_outputs_name_what_the_deploy_guide_uses(s):
    outputs = set(s.template["Outputs"])
    assert {
        "InputBucket", "OutputBucket", "AuditBucket", "JobsTable", "ApiUrl", "ModalTokenSecretArn",
        "WebhookSecretArn",
        "EventsTopicArn", "StateMachineArn", "UsagePlanFree", "UsagePlanPro", "UsagePlanEnterprise",
    } <= outputs  # fmt: skip
    guide = (REPO / "docs" / "deploy.md").read_text(encoding="utf-8")
    for name in ("ModalTokenSecretArn", "WebhookSecretArn", "UsagePlanPro", "InputBucket"):
        assert name in guide


@pytest.mark.parametrize(
    ("context", "message"),
    [
        ({"talkstack:retention": "3"}, "unknown setting 'talkstack:retention'"),
        ({"talkstack:writableBuckets": "Bad_Bucket"}, "not S3 bucket names"),
        ({"talkstack:logRetentionDays": "10"}, "retention periods"),
        ({"talkstack:alarmEmail": "nobody"}, "alarm_email"),
        ({"talkstack:modelBackends": "multitalk=gpu"}, "model_backends"),
        ({"talkstack:defaultModels": "avatar=lite-voice"}, "lite-voice is a voice model, not avatar"),
    ],
)
def test_bad_settings_fail_synth_with_the_setting_named(context, message):
    from talkstack_cdk.settings import load_settings

    with pytest.raises(ValueError, match=re.escape(message)):
        load_settings(context, environ={})


def test_environment_settings_apply_and_context_wins():
    from talkstack_cdk.settings import load_settings

    env = {"TALKSTACK_CDK_WORK_RETENTION_DAYS": "5", "TALKSTACK_CDK_STACK_NAME": "from-env"}
    settings = load_settings({"talkstack:stackName": "from-context"}, environ=env)
    assert settings.work_retention_days == 5 and settings.stack_name == "from-context"


def test_cdk_json_runs_the_app_and_pins_nothing_else_by_hand():
    cdk_json = json.loads((REPO / "cdk.json").read_text())
    assert cdk_json["app"] == ".venv/bin/python infra/cdk/app.py"
    package = json.loads((REPO / "package.json").read_text())
    assert package["devDependencies"]["aws-cdk"].startswith("^2.1148")
    assert Path(REPO / "package-lock.json").exists()


def test_only_the_handlers_that_talk_to_modal_read_its_token(s):
    # fail is one of them: a failed job's Modal calls are cancelled (pipeline/failure.py); moderate
    # calls the text-safety classifier (pipeline/moderate.py)
    token = {"Ref": s.logical_id(s.stack.modal_token)}
    readers = {
        name
        for name, (_, props) in functions_by_name(s).items()
        for st in role_statements(s, props["Role"]["Fn::GetAtt"][0])
        if "secretsmanager:GetSecretValue" in as_list(st["Action"]) and token in as_list(st["Resource"])
    }
    assert readers == {"api", "validate", "moderate", "dispatch", "fail"}


@pytest.mark.parametrize("family", ["voice", "video", "matte"])
def test_the_lambdas_cap_composition_scenes_at_the_containers_each_modal_class_was_deployed_with(
    monkeypatch, family
):
    """Plan runs no more scenes of a composition at once than the Modal classes of their steps may
    run containers (talkstack.pipeline.plan.max_concurrency): the stack passes each cap `modal deploy`
    got to the Lambdas, or synth fails."""
    from talkstack_cdk.settings import load_settings

    from talkstack.settings import ModalDeploySettings

    variable, key = f"TALKSTACK_{family.upper()}_MAX_CONTAINERS", f"talkstack:{family}MaxContainers"
    custom = functions_by_name(synth(**{key: "3"}))
    for name, value in custom["plan"][1]["Environment"]["Variables"].items():
        monkeypatch.setenv(name, value if isinstance(value, str) else text(value))
    assert ModalDeploySettings().max_containers(family) == 3  # parsed as the Lambda parses it
    assert getattr(load_settings({}, environ={variable: "2"}), f"{family}_max_containers") == 2
    with pytest.raises(ValueError, match=f"{key} is 3 but {variable}"):
        load_settings({key: "3"}, environ={variable: "5"})


def test_the_lambdas_cap_chunks_at_the_avatar_containers_the_modal_app_was_deployed_with(monkeypatch):
    """Plan runs no more chunks of a parallel avatar at once than the avatar class may run containers
    (TALKSTACK_AVATAR_MAX_CONTAINERS): the stack passes what `modal deploy` got, or synth fails."""
    from talkstack_cdk.settings import load_settings

    from talkstack.settings import ModalDeploySettings

    env = functions_by_name(synth())["plan"][1]["Environment"]["Variables"]
    assert env["TALKSTACK_AVATAR_MAX_CONTAINERS"] == str(ModalDeploySettings().avatar_max_containers)
    custom = functions_by_name(synth(**{"talkstack:avatarMaxContainers": "12"}))
    for variable, value in custom["plan"][1]["Environment"]["Variables"].items():
        monkeypatch.setenv(variable, value if isinstance(value, str) else text(value))
    assert ModalDeploySettings().max_containers("avatar") == 12  # parsed as the Lambda parses it
    assert load_settings({}, environ={"TALKSTACK_AVATAR_MAX_CONTAINERS": "6"}).avatar_max_containers == 6
    with pytest.raises(
        ValueError, match="talkstack:avatarMaxContainers is 3 but TALKSTACK_AVATAR_MAX_CONTAINERS"
    ):
        load_settings(
            {"talkstack:avatarMaxContainers": "3"}, environ={"TALKSTACK_AVATAR_MAX_CONTAINERS": "8"}
        )


def test_finalize_has_room_to_sign_a_long_render(s):
    # sign_output holds the worker's file and its signed copy in /tmp: a 10-minute 720p avatar is
    # several hundred MB, beyond half of Lambda's default 512 MB.
    _, finalize = functions_by_name(s)["finalize"]
    assert finalize["EphemeralStorage"]["Size"] >= 10240
