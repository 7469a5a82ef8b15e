"""One local stack for the integration tests: the real state machine, the real handlers, moto's
server, a local worker pool — and a verifying webhook receiver plus an SQS queue subscribed to the
events topic, so tests see exactly what a subscriber and a webhook endpoint would see.

Settings are shortened (heartbeat 4 s, webhook backoff 0.1 s) so timeouts and retries happen in
seconds; the state machine itself is the production file, unchanged.
"""

from __future__ import annotations

import contextlib
import json
import socket
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from talkstack.cli.drop import Dropped, drop_job, follow
from talkstack.contract.record import JobRecord
from talkstack.local.receiver import WebhookReceiver
from talkstack.local.resources import LOCAL_WEBHOOK_SECRET, LocalResources
from talkstack.local.stack import LocalStack
from talkstack.pipeline.store import JobStore
from talkstack.pipeline.webhook_endpoints import WebhookEndpoints

TEST_SETTINGS = {
    "heartbeat_seconds": "4",  # 2 s proved tight on a loaded 2-core runner (ffmpeg + torch in the pool)
    "webhook_max_attempts": "3",
    "webhook_initial_backoff_s": "0.1",
    "webhook_max_backoff_s": "0.5",
    "webhook_timeout_s": "2",
    "progress_event_step": "0.25",
}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class SnsTap:
    """An SQS queue subscribed to the events topic (raw delivery): every published event."""

    def __init__(self, stack: LocalStack) -> None:
        sqs, sns = stack.client("sqs"), stack.client("sns")
        self.sqs = sqs
        self.url = sqs.create_queue(QueueName=f"{stack.resources.stack}-events-tap")["QueueUrl"]
        arn = sqs.get_queue_attributes(QueueUrl=self.url, AttributeNames=["QueueArn"])["Attributes"][
            "QueueArn"
        ]
        sns.subscribe(
            TopicArn=stack.resources.topic_arn,
            Protocol="sqs",
            Endpoint=arn,
            Attributes={"RawMessageDelivery": "true"},
        )
        self.events: list[dict[str, Any]] = []
        self._lock = threading.Lock()

    def drain(self) -> None:
        with self._lock:
            while True:
                got = self.sqs.receive_message(QueueUrl=self.url, MaxNumberOfMessages=10, WaitTimeSeconds=0)
                messages = got.get("Messages", [])
                if not messages:
                    return
                for message in messages:
                    self.events.append(json.loads(message["Body"]))
                    self.sqs.delete_message(QueueUrl=self.url, ReceiptHandle=message["ReceiptHandle"])

    def for_job(self, job_id: str, type: str | None = None) -> list[dict[str, Any]]:
        self.drain()
        return [e for e in self.events if e["job_id"] == job_id and (type is None or e["type"] == type)]


class Pipeline:
    """The running stack plus the helpers tests use to drop jobs and wait for them."""

    def __init__(self, stack: LocalStack, hooks: WebhookReceiver, sns: SnsTap) -> None:
        self.stack, self.hooks, self.sns = stack, hooks, sns
        self.r: LocalResources = stack.resources
        self.s3 = stack.s3
        self.sfn = stack.client("stepfunctions")
        self.store = JobStore(self.r.jobs_table)

    @property
    def api_url(self) -> str:
        """The REST API of this stack, over real HTTP (the local API Gateway)."""
        return self.r.api_url

    def api_key(self, tier: str = "enterprise", name: str = "") -> str:
        """A fresh API key: every key is its own tenant with its own limits."""
        return self.stack.create_api_key(tier, name)

    def drop(self, manifest: dict[str, Any], media: dict[str, Path], name: str) -> Dropped:
        return drop_job(self.s3, self.r.input_bucket, manifest, media, name=name)

    def wait(self, job_id: str, timeout_s: float = 90) -> JobRecord:
        """Until the execution has ended (so the Notify state ran too)."""
        record = follow(self.store.get, job_id, timeout_s=timeout_s, poll_s=0.1)
        self.stack.wait_for_execution(job_id, timeout_s=timeout_s)
        return self.store.get(job_id) or record

    def wait_rejected(self, job_id: str, timeout_s: float = 30) -> JobRecord:
        """For jobs that may never get an execution (rejected at ingest)."""
        return follow(self.store.get, job_id, timeout_s=timeout_s, poll_s=0.1)

    def keys(self, bucket: str, prefix: str = "") -> dict[str, str]:
        listed = self.s3.list_objects_v2(Bucket=bucket, Prefix=prefix).get("Contents", [])
        return {obj["Key"]: obj["ETag"] for obj in listed}

    def executions(self, name: str) -> list[dict[str, Any]]:
        listed = self.sfn.list_executions(stateMachineArn=self.r.state_machine_arn, maxResults=1000)
        return [e for e in listed["executions"] if e["name"] == name]

    @contextlib.contextmanager
    def configured(self, **settings: str) -> Iterator[None]:
        """Run with changed TALKSTACK_* settings (handlers re-import, as after a redeploy), then restore."""
        before = dict(self.stack.settings)
        self.stack.configure(**settings)
        try:
            yield
        finally:
            self.stack.replace_settings(before)

    def wait_until(self, check: Any, timeout_s: float = 10) -> Any:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            value = check()
            if value:
                return value
            time.sleep(0.1)
        return check()


@pytest.fixture(name="free_port")
def free_port_fixture():
    """A function returning a port nobody listens on (for a dead webhook, a second stack)."""
    return free_port


def tenant_secrets(stack: LocalStack) -> Callable[[str], list[str]]:
    """What the shared receiver accepts for an API key's events: the key's own secret (per-request
    webhooks) and its endpoints' secrets, as they are stored now (a rotation's overlap included)."""
    endpoints = WebhookEndpoints(stack.resources.jobs_table, stack.client("dynamodb"))

    def secrets(key_id: str) -> list[str]:
        found = list(endpoints.key_secrets(key_id).active())
        for endpoint in endpoints.list_endpoints(key_id):
            found.extend(endpoint.secrets.active())
        return found

    return secrets


@pytest.fixture(scope="session")
def pipeline() -> Iterator[Pipeline]:
    resources = LocalResources(stack="talkstack-test", port=free_port())
    with (
        WebhookReceiver(LOCAL_WEBHOOK_SECRET) as hooks,
        LocalStack(resources, workers=2, settings=TEST_SETTINGS) as stack,
    ):
        hooks.tenant_secrets = tenant_secrets(stack)
        yield Pipeline(stack, hooks, SnsTap(stack))
