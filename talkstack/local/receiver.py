"""A webhook receiver for local runs: listens on 127.0.0.1, verifies every POST with the
`standardwebhooks` library (as a user's endpoint would), and keeps what it received.

Events of jobs without an API key are signed with the stack's secret; an API job's events name
their key (`api_key_id`) and are signed with that key's secrets (its own for the job's webhook, an
endpoint's for a registered endpoint): `tenant_secrets` maps a key id to the secrets to accept, as
a receiver serving several tenants would pick the right one.

Used by `make demo` to show a verified delivery, and by the tests and the benchmark. `fail_next`
makes it answer with error statuses first, to exercise the sender's retries.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from standardwebhooks import Webhook
from standardwebhooks.webhooks import WebhookVerificationError


@dataclass
class Delivery:
    headers: dict[str, str]
    body: str
    verified: bool
    received_at: float
    """time.time() on arrival."""
    status: int
    """What the receiver answered."""
    event: dict[str, Any] = field(default_factory=dict)


TenantSecrets = Callable[[str], Sequence[str]]
"""An API key id → the secrets its events may be signed with."""


class WebhookReceiver:
    def __init__(
        self,
        secret: str,
        host: str = "127.0.0.1",
        port: int = 0,
        tenant_secrets: TenantSecrets | None = None,
    ) -> None:
        self.webhook = Webhook(secret)
        self.tenant_secrets = tenant_secrets
        """Set (or replace) at any time; None: every event is verified with `secret`."""
        self.deliveries: list[Delivery] = []
        self._statuses: list[int] = []
        self._lock = threading.Condition()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("content-length", 0))
                body = self.rfile.read(length).decode()
                headers = {k.lower(): v for k, v in self.headers.items()}
                receiver._record(self, headers, body)

            def log_message(self, format: str, *args: Any) -> None:
                return None

        self._server = ThreadingHTTPServer((host, port), Handler)
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="webhook-receiver", daemon=True
        )

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}/hooks/talkstack"

    def _verifiers(self, body: str) -> list[Webhook]:
        """The stack's secret, or the secrets of the key the (unverified) body names: the id only
        picks the secret; a body that lies about it fails verification."""
        try:
            key_id = json.loads(body).get("api_key_id")
        except (ValueError, AttributeError):
            key_id = None
        if key_id and self.tenant_secrets is not None:
            return [Webhook(s) for s in self.tenant_secrets(key_id)]
        return [self.webhook]

    def _verify(self, body: str, headers: dict[str, str]) -> Any:
        for webhook in self._verifiers(body):
            try:
                return webhook.verify(body, headers)
            except WebhookVerificationError:
                continue
        raise WebhookVerificationError("no secret of this sender verifies the request")

    def _record(self, handler: BaseHTTPRequestHandler, headers: dict[str, str], body: str) -> None:
        try:
            event = self._verify(body, headers)
            verified = True
        except WebhookVerificationError:
            event, verified = json.loads(body) if body.startswith("{") else {}, False
        with self._lock:
            status = self._statuses.pop(0) if self._statuses else (204 if verified else 401)
            self.deliveries.append(Delivery(headers, body, verified, time.time(), status, event))
            self._lock.notify_all()
        handler.send_response(status)
        handler.send_header("content-length", "0")
        handler.end_headers()

    def fail_next(self, statuses: Iterable[int]) -> None:
        """Answer the next POSTs with these statuses (then 204 again)."""
        with self._lock:
            self._statuses.extend(statuses)

    def received(self, job_id: str | None = None, type: str | None = None) -> list[Delivery]:
        with self._lock:
            return [
                d
                for d in self.deliveries
                if (job_id is None or d.event.get("job_id") == job_id)
                and (type is None or d.event.get("type") == type)
            ]

    def wait_for(self, job_id: str, type: str, timeout_s: float = 30.0) -> Delivery:
        """The first accepted (2xx) delivery of `type` for `job_id`."""
        deadline = time.monotonic() + timeout_s
        with self._lock:
            while True:
                found = [
                    d
                    for d in self.deliveries
                    if d.event.get("job_id") == job_id and d.event.get("type") == type and d.status < 300
                ]
                if found:
                    return found[0]
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise TimeoutError(f"no {type} webhook for {job_id} within {timeout_s:.0f} s")
                self._lock.wait(remaining)

    def __enter__(self) -> WebhookReceiver:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()
