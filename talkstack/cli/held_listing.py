"""`talkstack moderation list`: every job whose outputs are held for review, for an operator.

It lives with the CLI, not in talkstack.pipeline.held_review, because it is a Scan (held jobs have no
index of their own): no Lambda does that, and their roles may not (tests/infra/test_template.py
checks every table call the deployed code makes); the CLI runs with the operator's credentials.
"""

from __future__ import annotations

from typing import Any

from talkstack.contract.record import JobRecord


def list_held(ddb: Any, table: str) -> list[JobRecord]:
    """Every held job of the table, oldest first (a Scan: operators only)."""
    kwargs: dict[str, Any] = {
        "TableName": table,
        "FilterExpression": "sk = :r AND #s = :held",
        "ProjectionExpression": "#r",
        "ExpressionAttributeNames": {"#s": "status", "#r": "record"},
        "ExpressionAttributeValues": {":r": {"S": "RECORD"}, ":held": {"S": "held"}},
    }
    records: list[JobRecord] = []
    while True:
        page = ddb.scan(**kwargs)
        records += [JobRecord.model_validate_json(item["record"]["S"]) for item in page.get("Items", [])]
        if "LastEvaluatedKey" not in page:
            return sorted(records, key=lambda r: (r.created_at, r.job_id))
        kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]
