"""Each API key's webhook signing secrets and registered endpoints, in the jobs table under the
key's own partition `pk = WEBHOOKS#<key id>`:

  SECRET                the key's secret for per-request webhooks (`notify.webhook_url`)
  ENDPOINT#<wh_…>       a registered endpoint: URL, event filter, description, its own secrets
  COUNT                 how many endpoints the key has (the per-key limit, kept in a transaction)

Secrets are stored as values, because notify must sign with them: what protects them is the table
(encrypted at rest with a KMS key, readable only by the stack's roles) and the API, which shows an
endpoint's secret once (at creation and rotation) and the key's own secret only to that key.
Nothing here takes a key id from a request: the API passes the caller's, so no key can reach
another key's partition.

A rotation keeps the old secret for an overlap period (`webhook_rotation_overlap_s`); until it ends
every request carries both signatures. Rotating again within the overlap ends the older one at once.
"""

from __future__ import annotations

import secrets
import string
from datetime import datetime, timedelta
from typing import Any

from botocore.exceptions import ClientError

from talkstack.contract.fields import EventType, StrictModel
from talkstack.contract.record import UtcDatetime, utc_now
from talkstack.pipeline.aws import error_code
from talkstack.pipeline.webhook_signing import generate_secret

ENDPOINT_ID_PATTERN = r"^wh_[a-z0-9]{24}$"
_ROTATE_TRIES = 5


def new_endpoint_id() -> str:
    return "wh_" + "".join(secrets.choice(string.ascii_lowercase + string.digits) for _ in range(24))


class SigningSecrets(StrictModel):
    """A secret, and the one it replaced while the rotation's overlap lasts."""

    current: str
    previous: str | None = None
    previous_expires_at: UtcDatetime | None = None

    @classmethod
    def new(cls) -> SigningSecrets:
        return cls(current=generate_secret())

    def active(self, now: datetime | None = None) -> tuple[str, ...]:
        """What to sign with now: the current secret, and the previous one until its overlap ends."""
        if self.previous and self.previous_expires_at and (now or utc_now()) < self.previous_expires_at:
            return (self.current, self.previous)
        return (self.current,)

    def rotated(self, overlap_s: int, now: datetime | None = None) -> SigningSecrets:
        if overlap_s <= 0:
            return SigningSecrets.new()
        return SigningSecrets(
            current=generate_secret(),
            previous=self.current,
            previous_expires_at=(now or utc_now()) + timedelta(seconds=overlap_s),
        )

    def overlap_ends(self, now: datetime | None = None) -> datetime | None:
        """When the previous secret stops being sent, if it still is."""
        return self.previous_expires_at if len(self.active(now)) > 1 else None


class WebhookEndpoint(StrictModel):
    id: str
    url: str
    events: list[EventType] | None = None
    """Only these event types; None: every event."""
    description: str | None = None
    created_at: UtcDatetime
    secrets: SigningSecrets

    def wants(self, event_type: str) -> bool:
        return self.events is None or event_type in self.events


class EndpointLimitReached(Exception):
    pass


class RotationConflict(Exception):
    """Someone else rotated the same secret between our read and our write, again and again."""


def _pk(key_id: str) -> dict[str, str]:
    return {"S": f"WEBHOOKS#{key_id}"}


class WebhookEndpoints:
    """The webhook items of every key; each method acts on the one key it is given."""

    def __init__(self, table: str, ddb: Any) -> None:
        self.table, self.ddb = table, ddb

    # --- registered endpoints ---------------------------------------------------------------------

    def create(
        self,
        key_id: str,
        url: str,
        events: list[EventType] | None,
        description: str | None,
        max_endpoints: int,
    ) -> WebhookEndpoint:
        """A new endpoint with a fresh secret, or EndpointLimitReached. The count and the endpoint
        are written in one transaction, so concurrent creations cannot pass the limit."""
        endpoint = WebhookEndpoint(
            id=new_endpoint_id(),
            url=url,
            events=events,
            description=description,
            created_at=utc_now(),
            secrets=SigningSecrets.new(),
        )
        try:
            self.ddb.transact_write_items(
                TransactItems=[
                    {
                        "Update": {
                            "TableName": self.table,
                            "Key": {"pk": _pk(key_id), "sk": {"S": "COUNT"}},
                            "UpdateExpression": "ADD endpoints :one",
                            "ConditionExpression": "attribute_not_exists(endpoints) OR endpoints < :max",
                            "ExpressionAttributeValues": {
                                ":one": {"N": "1"},
                                ":max": {"N": str(max_endpoints)},
                            },
                        }
                    },
                    {
                        "Put": {
                            "TableName": self.table,
                            "Item": self._item(key_id, endpoint),
                            "ConditionExpression": "attribute_not_exists(pk)",
                        }
                    },
                ]
            )
        except ClientError as exc:
            if error_code(exc) == "TransactionCanceledException":
                raise EndpointLimitReached(key_id) from exc
            raise
        return endpoint

    def get(self, key_id: str, endpoint_id: str) -> WebhookEndpoint | None:
        found = self.ddb.get_item(
            TableName=self.table,
            Key={"pk": _pk(key_id), "sk": {"S": f"ENDPOINT#{endpoint_id}"}},
            ConsistentRead=True,
        ).get("Item")
        return WebhookEndpoint.model_validate_json(found["endpoint"]["S"]) if found else None

    def list_endpoints(self, key_id: str) -> list[WebhookEndpoint]:
        found: list[WebhookEndpoint] = []
        paginator = self.ddb.get_paginator("query")
        for page in paginator.paginate(
            TableName=self.table,
            KeyConditionExpression="pk = :pk AND begins_with(sk, :p)",
            ExpressionAttributeValues={":pk": _pk(key_id), ":p": {"S": "ENDPOINT#"}},
            ConsistentRead=True,
        ):
            found.extend(WebhookEndpoint.model_validate_json(i["endpoint"]["S"]) for i in page["Items"])
        return sorted(found, key=lambda e: e.created_at)

    def delete(self, key_id: str, endpoint_id: str) -> bool:
        """False if the key has no such endpoint (nothing changed)."""
        try:
            self.ddb.transact_write_items(
                TransactItems=[
                    {
                        "Delete": {
                            "TableName": self.table,
                            "Key": {"pk": _pk(key_id), "sk": {"S": f"ENDPOINT#{endpoint_id}"}},
                            "ConditionExpression": "attribute_exists(pk)",
                        }
                    },
                    {
                        "Update": {
                            "TableName": self.table,
                            "Key": {"pk": _pk(key_id), "sk": {"S": "COUNT"}},
                            "UpdateExpression": "ADD endpoints :minus",
                            "ExpressionAttributeValues": {":minus": {"N": "-1"}},
                        }
                    },
                ]
            )
        except ClientError as exc:
            if error_code(exc) == "TransactionCanceledException":
                return False
            raise
        return True

    def rotate(self, key_id: str, endpoint_id: str, overlap_s: int) -> WebhookEndpoint | None:
        """The endpoint with a new secret (the old one kept for `overlap_s`); None if there is none."""
        for _ in range(_ROTATE_TRIES):
            endpoint = self.get(key_id, endpoint_id)
            if endpoint is None:
                return None
            changed = endpoint.model_copy(update={"secrets": endpoint.secrets.rotated(overlap_s)})
            if self._replace(key_id, f"ENDPOINT#{endpoint_id}", "endpoint", endpoint, changed):
                return changed
        raise RotationConflict(endpoint_id)

    # --- the key's own secret (per-request webhooks) ----------------------------------------------

    def key_secrets(self, key_id: str) -> SigningSecrets:
        """The key's secret for per-request webhooks, created on first need."""
        key = {"pk": _pk(key_id), "sk": {"S": "SECRET"}}
        found = self.ddb.get_item(TableName=self.table, Key=key, ConsistentRead=True).get("Item")
        if found:
            return SigningSecrets.model_validate_json(found["secrets"]["S"])
        fresh = SigningSecrets.new()
        try:
            self.ddb.put_item(
                TableName=self.table,
                Item={**key, "secrets": {"S": fresh.model_dump_json()}},
                ConditionExpression="attribute_not_exists(pk)",
            )
            return fresh
        except ClientError as exc:
            if error_code(exc) != "ConditionalCheckFailedException":
                raise
        # Another request created it first: use theirs, there is only ever one.
        found = self.ddb.get_item(TableName=self.table, Key=key, ConsistentRead=True)["Item"]
        return SigningSecrets.model_validate_json(found["secrets"]["S"])

    def rotate_key_secrets(self, key_id: str, overlap_s: int) -> SigningSecrets:
        for _ in range(_ROTATE_TRIES):
            current = self.key_secrets(key_id)
            changed = current.rotated(overlap_s)
            if self._replace(key_id, "SECRET", "secrets", current, changed):
                return changed
        raise RotationConflict(key_id)

    # --- plumbing ---------------------------------------------------------------------------------

    def _item(self, key_id: str, endpoint: WebhookEndpoint) -> dict[str, Any]:
        return {
            "pk": _pk(key_id),
            "sk": {"S": f"ENDPOINT#{endpoint.id}"},
            "endpoint": {"S": endpoint.model_dump_json()},
        }

    def _replace(self, key_id: str, sk: str, attribute: str, old: StrictModel, new: StrictModel) -> bool:
        """Write `new` only if the item still holds `old` (a concurrent rotation wins, we re-read)."""
        try:
            self.ddb.put_item(
                TableName=self.table,
                Item={"pk": _pk(key_id), "sk": {"S": sk}, attribute: {"S": new.model_dump_json()}},
                ConditionExpression="#a = :old",
                ExpressionAttributeNames={"#a": attribute},
                ExpressionAttributeValues={":old": {"S": old.model_dump_json()}},
            )
            return True
        except ClientError as exc:
            if error_code(exc) == "ConditionalCheckFailedException":
                return False
            raise
