"""`talkstack keys list|disable|enable|revoke` on moto's DynamoDB (the jobs table layout the stack
creates), through the real CLI with `--table`: what a listing shows and hides, a disabled key that
comes back, a revoked one that does not, and each change in the key's audit trail."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from talkstack.api.keys import INVALID_KEY, KeyStore, hash_key
from talkstack.cli import app
from talkstack.errors import ErrorCode, TalkstackError
from talkstack.pipeline.audit import AuditLog

runner = CliRunner()


def keys_cli(moto_aws, *args: str):
    return runner.invoke(app, ["keys", *args, "--table", moto_aws["table"]], env={"COLUMNS": "200"})


def refusal(keys: KeyStore, key: str) -> tuple[ErrorCode, str]:
    with pytest.raises(TalkstackError) as caught:
        keys.authenticate({"Authorization": f"Bearer {key}"})
    return caught.value.code, caught.value.message


def test_list_shows_each_key_but_never_its_secret_or_hash(moto_aws):
    keys = KeyStore(moto_aws["table"], moto_aws["ddb"])
    first, second = keys.create("pro", "acme"), keys.create("free")

    listed = keys_cli(moto_aws, "list", "--json")
    assert listed.exit_code == 0, listed.output
    rows = [json.loads(line) for line in listed.output.splitlines()]
    assert [(r["key_id"], r["name"], r["tier"], r["status"]) for r in rows] == [
        (first.principal.key_id, "acme", "pro", "active"),
        (second.principal.key_id, second.principal.key_id, "free", "active"),
    ]
    assert all(r["created_at"].startswith("20") for r in rows)
    table = keys_cli(moto_aws, "list")
    assert table.exit_code == 0 and first.principal.key_id in table.output and "acme" in table.output
    for new in (first, second):
        for output in (listed.output, table.output):
            assert new.key not in output and hash_key(new.key) not in output
            assert new.key.rsplit("_", 1)[1] not in output  # not even the secret part


def test_a_disabled_key_is_refused_like_an_unknown_one_until_enabled(moto_aws):
    keys = KeyStore(moto_aws["table"], moto_aws["ddb"])
    new = keys.create("pro", "acme")
    key_id = new.principal.key_id
    unknown = refusal(keys, f"tsk_{'z' * 12}_{'a' * 32}")
    assert unknown == (ErrorCode.UNAUTHORIZED, INVALID_KEY)

    disabled = keys_cli(moto_aws, "disable", key_id)
    assert disabled.exit_code == 0, disabled.output
    assert f"talkstack keys enable {key_id}" in disabled.output
    assert refusal(keys, new.key) == unknown
    assert json.loads(keys_cli(moto_aws, "list", "--json").output)["status"] == "disabled"

    enabled = keys_cli(moto_aws, "enable", key_id)
    assert enabled.exit_code == 0, enabled.output
    assert keys.authenticate({"x-api-key": new.key}).key_id == key_id
    assert json.loads(keys_cli(moto_aws, "list", "--json").output)["status"] == "active"

    trail, _ = AuditLog(moto_aws["table"], moto_aws["ddb"]).trail(key_id, newest_first=False)
    assert [(e.action, e.object.id, e.source_ip) for e in trail] == [
        ("key.created", key_id, "cli"),
        ("key.disabled", key_id, "cli"),
        ("key.enabled", key_id, "cli"),
    ]


def test_a_revoked_key_cannot_be_enabled_or_disabled(moto_aws):
    keys = KeyStore(moto_aws["table"], moto_aws["ddb"])
    new = keys.create("free")
    key_id = new.principal.key_id
    assert keys_cli(moto_aws, "revoke", key_id).exit_code == 0
    for command in ("enable", "disable"):
        refused = keys_cli(moto_aws, command, key_id)
        assert refused.exit_code == 2
        assert refused.output.startswith("error [CONFLICT]: ") and "revoked" in refused.output
        assert len(refused.output.strip().splitlines()) == 1
    assert refusal(keys, new.key) == (ErrorCode.UNAUTHORIZED, INVALID_KEY)
    assert json.loads(keys_cli(moto_aws, "list", "--json").output)["status"] == "revoked"
    trail, _ = AuditLog(moto_aws["table"], moto_aws["ddb"]).trail(key_id, newest_first=False)
    assert [e.action for e in trail] == ["key.created", "key.revoked"]


def test_a_key_revoked_before_keys_had_a_status_stays_revoked(moto_aws):
    """Keys revoked by earlier versions carry only `disabled: true`: that meant revoked."""
    keys = KeyStore(moto_aws["table"], moto_aws["ddb"])
    new = keys.create("free")
    moto_aws["ddb"].update_item(
        TableName=moto_aws["table"],
        Key={"pk": {"S": f"APIKEY#{new.principal.key_id}"}, "sk": {"S": "KEY"}},
        UpdateExpression="SET disabled = :t REMOVE #s",
        ExpressionAttributeNames={"#s": "status"},
        ExpressionAttributeValues={":t": {"BOOL": True}},
    )
    assert json.loads(keys_cli(moto_aws, "list", "--json").output)["status"] == "revoked"
    refused = keys_cli(moto_aws, "enable", new.principal.key_id)
    assert refused.exit_code == 2 and "error [CONFLICT]" in refused.output
    assert refusal(keys, new.key)[0] == ErrorCode.UNAUTHORIZED


def test_an_unknown_key_id_is_not_found(moto_aws):
    for command in ("disable", "enable", "revoke"):
        result = keys_cli(moto_aws, command, "nosuchkey000")
        assert result.exit_code == 2
        assert result.output == "error [NOT_FOUND]: no API key 'nosuchkey000'\n"
