"""`talkstack keys list`: every API key of a jobs table, for an operator.

It lives with the CLI, not in talkstack.api.keys, because it is a Scan: keys share the jobs table and
have no index of their own, so listing them reads the whole table. No Lambda does that, and their
roles may not (tests/infra/test_template.py checks every table call the deployed code makes); the
CLI runs with the operator's credentials.
"""

from __future__ import annotations

from typing import Any

from talkstack.api.keys import KeyInfo, KeyStore


def list_keys(store: KeyStore) -> list[KeyInfo]:
    """Every key of the store's table, oldest first, without its hash."""
    keys: list[KeyInfo] = []
    kwargs: dict[str, Any] = {
        "TableName": store.table,
        "FilterExpression": "begins_with(pk, :p) AND sk = :k",
        "ProjectionExpression": "pk, tier, #n, created_at, disabled, #s",
        "ExpressionAttributeNames": {"#n": "name", "#s": "status"},
        "ExpressionAttributeValues": {":p": {"S": "APIKEY#"}, ":k": {"S": "KEY"}},
    }
    while True:
        page = store.ddb.scan(**kwargs)
        keys += [KeyInfo.of(item) for item in page.get("Items", [])]
        if "LastEvaluatedKey" not in page:
            return sorted(keys, key=lambda k: (k.created_at, k.key_id))
        kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]
