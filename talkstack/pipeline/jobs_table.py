"""The jobs table's shape, defined once: its keys, the `by-owner` index, the TTL attribute and the
billing mode. The CDK storage construct, the local stack and the tests that create a table all
build it from these names, so a deployed table and an emulated one cannot drift apart.

What the items under these keys hold is store.py's business (and talkstack.api's for the API's own
partitions). Only the standard library is imported here, so infra/cdk can read the shape without
the pipeline's AWS clients.
"""

from __future__ import annotations

from typing import Any

PARTITION_KEY = "pk"
"""`JOB#<id>` for a job's items; the REST API's own partitions use other prefixes."""
SORT_KEY = "sk"

OWNER_INDEX = "by-owner"
"""GSI: partition `owner` (API key id), sort `created_at` (ISO-8601 UTC, so it sorts by time)."""
OWNER_INDEX_PARTITION_KEY = "owner"
OWNER_INDEX_SORT_KEY = "created_at"

TTL_ATTRIBUTE = "expires_at"
"""Epoch seconds after which DynamoDB deletes the item (job items, tokens, rate windows, uploads,
idempotency records)."""

BILLING_MODE = "PAY_PER_REQUEST"
"""On demand: the load is bursty (a job writes a few dozen items, then nothing)."""

KEY_ATTRIBUTES: tuple[str, ...] = (PARTITION_KEY, SORT_KEY, OWNER_INDEX_PARTITION_KEY, OWNER_INDEX_SORT_KEY)
"""Every attribute used as a table or index key; all are strings."""


def create_table_request(table_name: str) -> dict[str, Any]:
    """Keyword arguments for boto3's `dynamodb.create_table` that make a jobs table `table_name`
    (the TTL is a separate call: `time_to_live_request`)."""
    return {
        "TableName": table_name,
        "KeySchema": [
            {"AttributeName": PARTITION_KEY, "KeyType": "HASH"},
            {"AttributeName": SORT_KEY, "KeyType": "RANGE"},
        ],
        "AttributeDefinitions": [{"AttributeName": name, "AttributeType": "S"} for name in KEY_ATTRIBUTES],
        "GlobalSecondaryIndexes": [
            {
                "IndexName": OWNER_INDEX,
                "KeySchema": [
                    {"AttributeName": OWNER_INDEX_PARTITION_KEY, "KeyType": "HASH"},
                    {"AttributeName": OWNER_INDEX_SORT_KEY, "KeyType": "RANGE"},
                ],
                "Projection": {"ProjectionType": "ALL"},
            }
        ],
        "BillingMode": BILLING_MODE,
    }


def time_to_live_request(table_name: str) -> dict[str, Any]:
    """Keyword arguments for boto3's `dynamodb.update_time_to_live` that turn on the jobs table's TTL."""
    return {
        "TableName": table_name,
        "TimeToLiveSpecification": {"Enabled": True, "AttributeName": TTL_ATTRIBUTE},
    }
