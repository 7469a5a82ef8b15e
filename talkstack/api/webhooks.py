"""What `/v1/webhooks` does, free of HTTP: a key's registered endpoints and its signing secrets.

Every method acts on the calling key's own partition (`WEBHOOKS#<key id>`, talkstack.pipeline.
webhook_endpoints): an endpoint id of another key is looked up under the caller's partition and
is simply not there, so it gets the same NOT_FOUND as an id that never existed, and no route can
name another key's secret at all.

Creating, rotating and deleting an endpoint, and rotating the key's secret, each happen in one
method here (`create`, `rotate`, `delete`, `rotate_key_secret`), and each is written to the key's
audit trail after the change and before the answer (talkstack.pipeline.audit: a secret is never
handed out unlogged; the URL is logged without its query string, which may hold a token).
"""

from __future__ import annotations

import re
from typing import Any

from talkstack.api.keys import Principal
from talkstack.api.models import WebhookCreate, WebhookCreated, WebhookList, WebhookSecret, WebhookView
from talkstack.errors import ErrorCode, TalkstackError
from talkstack.pipeline.audit import AuditLog
from talkstack.pipeline.config import PipelineConfig
from talkstack.pipeline.webhook_endpoints import (
    ENDPOINT_ID_PATTERN,
    EndpointLimitReached,
    RotationConflict,
    SigningSecrets,
    WebhookEndpoint,
    WebhookEndpoints,
)
from talkstack.pipeline.webhooks import WebhookRefused, check_webhook_target, redact_url

_ENDPOINT_ID = re.compile(ENDPOINT_ID_PATTERN)
KEY_SECRET_OBJECT = "key-secret"
"""The audit trail's object id for the key's own signing secret (per-request webhooks)."""


def _view(endpoint: WebhookEndpoint) -> WebhookView:
    return WebhookView(
        id=endpoint.id,
        url=endpoint.url,
        events=endpoint.events,
        description=endpoint.description,
        created_at=endpoint.created_at,
        previous_secret_expires_at=endpoint.secrets.overlap_ends(),
    )


def _created(endpoint: WebhookEndpoint) -> WebhookCreated:
    return WebhookCreated(**_view(endpoint).model_dump(), secret=endpoint.secrets.current)


def _secret(values: SigningSecrets) -> WebhookSecret:
    return WebhookSecret(secret=values.current, previous_secret_expires_at=values.overlap_ends())


def _not_found(endpoint_id: str) -> TalkstackError:
    # The same answer whether the id is malformed, missing or another key's.
    return TalkstackError(ErrorCode.NOT_FOUND, f"no webhook endpoint {endpoint_id[:80]!r} for this API key")


def _busy() -> TalkstackError:
    return TalkstackError(
        ErrorCode.CONFLICT,
        "the secret is being rotated by another request; retry in a moment",
        retry_after_s=1,
    )


class WebhookService:
    def __init__(self, config: PipelineConfig, ddb: Any, audit: AuditLog | None = None) -> None:
        self.config = config
        self.endpoints = WebhookEndpoints(config.jobs_table, ddb)
        self.audit = audit or AuditLog(config.jobs_table, ddb, config.audit_retention_days)

    def _check_url(self, url: str) -> None:
        try:
            check_webhook_target(url, allow_loopback=self.config.allow_loopback_webhooks)
        except WebhookRefused as exc:
            raise TalkstackError(ErrorCode.INVALID_REQUEST, f"url: {exc.reason}", field="url") from exc

    def _owned(self, principal: Principal, endpoint_id: str) -> WebhookEndpoint:
        found = self.endpoints.get(principal.key_id, endpoint_id) if _ENDPOINT_ID.match(endpoint_id) else None
        if found is None:
            raise _not_found(endpoint_id)
        return found

    # --- registered endpoints ---------------------------------------------------------------------

    def create(self, principal: Principal, request: WebhookCreate) -> WebhookCreated:
        self._check_url(request.url)
        events = sorted(set(request.events)) if request.events else None
        limit = self.config.webhook_max_endpoints
        try:
            endpoint = self.endpoints.create(
                principal.key_id, request.url, events, request.description, limit
            )
        except EndpointLimitReached as exc:
            raise TalkstackError(
                ErrorCode.CONFLICT,
                f"this API key already has {limit} webhook endpoints, the most allowed; delete one first",
                max_endpoints=limit,
            ) from exc
        self.audit.record(
            principal.actor,
            "webhook.created",
            "webhook",
            endpoint.id,
            url=redact_url(endpoint.url),
            events=events,
        )
        return _created(endpoint)

    def list_endpoints(self, principal: Principal) -> WebhookList:
        return WebhookList(webhooks=[_view(e) for e in self.endpoints.list_endpoints(principal.key_id)])

    def get(self, principal: Principal, endpoint_id: str) -> WebhookView:
        return _view(self._owned(principal, endpoint_id))

    def delete(self, principal: Principal, endpoint_id: str) -> None:
        self._owned(principal, endpoint_id)
        if not self.endpoints.delete(principal.key_id, endpoint_id):
            raise _not_found(endpoint_id)  # deleted by a concurrent request
        self.audit.record(principal.actor, "webhook.deleted", "webhook", endpoint_id)

    def rotate(self, principal: Principal, endpoint_id: str) -> WebhookCreated:
        self._owned(principal, endpoint_id)
        try:
            endpoint = self.endpoints.rotate(
                principal.key_id, endpoint_id, self.config.webhook_rotation_overlap_s
            )
        except RotationConflict as exc:
            raise _busy() from exc
        if endpoint is None:
            raise _not_found(endpoint_id)
        self.audit.record(principal.actor, "webhook.rotated", "webhook", endpoint_id)
        return _created(endpoint)

    # --- the key's own secret ---------------------------------------------------------------------

    def key_secret(self, principal: Principal) -> WebhookSecret:
        """The key's secret, created on first need; every read is in the audit trail (a secret read
        is how a leaked API key would be turned into forged webhooks)."""
        values = self.endpoints.key_secrets(principal.key_id)
        self.audit.record(principal.actor, "webhook.secret_read", "webhook", KEY_SECRET_OBJECT)
        return _secret(values)

    def rotate_key_secret(self, principal: Principal) -> WebhookSecret:
        try:
            values = self.endpoints.rotate_key_secrets(
                principal.key_id, self.config.webhook_rotation_overlap_s
            )
        except RotationConflict as exc:
            raise _busy() from exc
        self.audit.record(principal.actor, "webhook.rotated", "webhook", KEY_SECRET_OBJECT)
        return _secret(values)
