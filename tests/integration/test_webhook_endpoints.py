"""Webhooks per tenant over real HTTP against the local stack: `/v1/webhooks` endpoints and the key's
own secret, deliveries verified with the standardwebhooks library by a real receiver on 127.0.0.1,
rotation with its overlap, uniform 404s across keys, a re-invoked notify that sends nothing, and a
failing endpoint paused while another key's is served.

Jobs here are cancelled right after submission: only their `job.queued` event matters, and it is
raised (and delivered) by the submission itself."""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Iterator

import pytest
from standardwebhooks import Webhook
from standardwebhooks.webhooks import WebhookVerificationError

from talkstack.client import ApiError, TalkstackClient
from talkstack.contract.state import NotifyRequest
from talkstack.local.receiver import Delivery, WebhookReceiver
from talkstack.local.resources import LOCAL_WEBHOOK_SECRET
from talkstack.pipeline.webhook_breaker import BreakerPolicy, WebhookBreaker
from tests.integration.test_api import SAMPLES, Api, error_of


class Tenant(Api):
    def __init__(self, pipeline, name: str) -> None:
        key = pipeline.api_key("pro", name)
        super().__init__(pipeline.api_url, key)
        self.key_id = key.split("_")[1]

    def delete(self, path: str) -> object:
        return self.http.delete(path, headers=self.headers)

    def queued_job(self, **notify: object) -> str:
        """Submit a job and cancel it at once: its job.queued event is all these tests need."""
        image = self.upload(SAMPLES / "portrait.png", "image/png")
        body: dict[str, object] = {"inputs": {"image": image, "text": "Never said."}}
        if notify:
            body["notify"] = notify
        accepted = self.post("/v1/avatar/generate", json=body)
        assert accepted.status_code == 202, accepted.text
        job_id = accepted.json()["job_id"]
        assert self.post(f"/v1/jobs/{job_id}/cancel").status_code == 200
        return job_id


@pytest.fixture
def tenants(pipeline) -> tuple[Tenant, Tenant]:
    return Tenant(pipeline, "tenant-a"), Tenant(pipeline, "tenant-b")


@contextlib.contextmanager
def receiver(trusted: dict[str, list[str]]) -> Iterator[WebhookReceiver]:
    """A receiver that accepts (2xx) what verifies with the secrets `trusted` lists for the event's
    key; the tests check signatures themselves too."""
    with WebhookReceiver(LOCAL_WEBHOOK_SECRET, tenant_secrets=lambda key: trusted.get(key, [])) as r:
        yield r


def verifies(secret: str, delivery: Delivery) -> bool:
    try:
        Webhook(secret).verify(delivery.body, delivery.headers)
        return True
    except WebhookVerificationError:
        return False


def queued(hooks: WebhookReceiver, job_id: str, pipeline) -> Delivery:
    """The job.queued delivery of `job_id` (whatever the receiver answered)."""
    found = pipeline.wait_until(lambda: hooks.received(job_id, "job.queued"), 30)
    assert found, f"no job.queued delivery for {job_id}"
    return found[0]


def test_endpoints_are_each_keys_own_and_another_keys_id_is_not_found(pipeline, tenants):
    a, b = tenants
    created = a.post("/v1/webhooks", json={"url": pipeline.hooks.url, "events": ["job.completed"]})
    assert created.status_code == 201, created.text
    endpoint = created.json()
    assert endpoint["id"].startswith("wh_") and endpoint["secret"].startswith("whsec_")
    assert endpoint["events"] == ["job.completed"] and endpoint["previous_secret_expires_at"] is None
    wh = endpoint["id"]

    listed = a.get("/v1/webhooks").json()["webhooks"]
    assert [e["id"] for e in listed] == [wh] and "secret" not in listed[0]
    assert "secret" not in a.get(f"/v1/webhooks/{wh}").json()

    # Key B: A's endpoint is exactly as absent as one that never existed
    missing = "wh_" + "0" * 24
    assert b.get("/v1/webhooks").json() == {"webhooks": []}
    for call in (
        lambda i: b.get(f"/v1/webhooks/{i}"),
        lambda i: b.delete(f"/v1/webhooks/{i}"),
        lambda i: b.post(f"/v1/webhooks/{i}/rotate"),
    ):
        theirs, nobodys = call(wh), call(missing)
        assert theirs.status_code == nobodys.status_code == 404
        assert error_of(theirs)["message"].replace(wh, "ID") == error_of(nobodys)["message"].replace(
            missing, "ID"
        )
        assert error_of(theirs)["code"] == "NOT_FOUND"
    assert a.get(f"/v1/webhooks/{wh}").status_code == 200  # untouched by B's attempts

    # The SSRF guard at creation, and A deletes its own
    refused = a.post("/v1/webhooks", json={"url": "https://169.254.169.254/latest/meta-data"})
    assert refused.status_code == 400 and "metadata" in error_of(refused)["message"]
    assert a.delete(f"/v1/webhooks/{wh}").status_code == 204
    assert a.get(f"/v1/webhooks/{wh}").status_code == 404


def test_a_key_may_have_only_so_many_endpoints(pipeline, tenants):
    a, _ = tenants
    ids = []
    for n in range(10):  # webhook_max_endpoints' default
        answer = a.post("/v1/webhooks", json={"url": pipeline.hooks.url, "description": f"#{n}"})
        assert answer.status_code == 201, answer.text
        ids.append(answer.json()["id"])
    over = a.post("/v1/webhooks", json={"url": pipeline.hooks.url})
    assert over.status_code == 409 and error_of(over)["details"]["max_endpoints"] == 10
    assert a.delete(f"/v1/webhooks/{ids[0]}").status_code == 204
    assert a.post("/v1/webhooks", json={"url": pipeline.hooks.url}).status_code == 201
    for wh in ids[1:]:
        a.delete(f"/v1/webhooks/{wh}")


def test_an_endpoint_delivery_verifies_with_its_keys_secret_and_not_another_keys(pipeline, tenants):
    a, b = tenants
    trusted: dict[str, list[str]] = {}
    with receiver(trusted) as hooks:
        secret_a = a.post("/v1/webhooks", json={"url": hooks.url, "events": ["job.queued"]}).json()["secret"]
        secret_b = b.post("/v1/webhooks", json={"url": hooks.url, "events": ["job.queued"]}).json()["secret"]
        trusted.update({a.key_id: [secret_a], b.key_id: [secret_b]})

        job_id = a.queued_job()
        delivery = queued(hooks, job_id, pipeline)

        event = json.loads(delivery.body)
        assert (event["job_id"], event["api_key_id"]) == (job_id, a.key_id)
        assert verifies(secret_a, delivery) and delivery.status == 204
        assert not verifies(secret_b, delivery)
        assert not verifies(LOCAL_WEBHOOK_SECRET, delivery)
        time.sleep(1)
        assert len(hooks.received(job_id)) == 1  # B's endpoint heard nothing of A's job

        # Lambda re-invokes notify with the same event (an async retry): nothing is sent again
        sent = pipeline.store.events(job_id)
        (event_queued,) = [e for e in sent if e.type == "job.queued"]
        answer = pipeline.stack.client("lambda").invoke(
            FunctionName=pipeline.r.function_name("notify"),
            Payload=NotifyRequest.of(event_queued).model_dump_json().encode(),
        )
        result = json.loads(answer["Payload"].read())
        assert result["sns_message_id"] is None and result["endpoints"] == {}, result
        assert len(hooks.received(job_id)) == 1
        assert len(pipeline.sns.for_job(job_id, "job.queued")) == 1
        (report,) = [r for r in pipeline.store.deliveries(job_id) if r["event_type"] == "job.queued"]
        assert report["delivered"] and report["endpoint_id"] is not None


def test_rotation_keeps_every_delivery_verifiable(pipeline, tenants):
    a, _ = tenants
    trusted: dict[str, list[str]] = {}
    with receiver(trusted) as hooks:
        created = a.post("/v1/webhooks", json={"url": hooks.url, "events": ["job.queued"]}).json()
        old = created["secret"]
        trusted[a.key_id] = [old]

        with pipeline.configured(webhook_rotation_overlap_s="4"):
            rotated = a.post(f"/v1/webhooks/{created['id']}/rotate")
        assert rotated.status_code == 200, rotated.text
        new = rotated.json()["secret"]
        assert new != old and rotated.json()["previous_secret_expires_at"] is not None
        assert a.get(f"/v1/webhooks/{created['id']}").json()["previous_secret_expires_at"] is not None

        # During the overlap: both signatures, so receivers on either secret accept it
        during = queued(hooks, a.queued_job(), pipeline)
        assert verifies(old, during) and verifies(new, during)
        assert len(during.headers["webhook-signature"].split(" ")) == 2

        # After it: the new secret only
        time.sleep(4.5)
        after = queued(hooks, a.queued_job(), pipeline)
        assert verifies(new, after) and not verifies(old, after)
        assert a.get(f"/v1/webhooks/{created['id']}").json()["previous_secret_expires_at"] is None


def test_per_request_webhooks_are_signed_with_the_keys_own_secret(pipeline, tenants):
    a, b = tenants
    secret_a = a.get("/v1/webhooks/secret").json()
    assert secret_a["secret"].startswith("whsec_") and secret_a["previous_secret_expires_at"] is None
    assert a.get("/v1/webhooks/secret").json() == secret_a  # one secret per key, created once
    secret_b = b.get("/v1/webhooks/secret").json()["secret"]
    assert secret_b != secret_a["secret"]

    with receiver({a.key_id: [secret_a["secret"]]}) as hooks:
        delivery = queued(hooks, a.queued_job(webhook_url=hooks.url, events=["job.queued"]), pipeline)
        assert json.loads(delivery.body)["api_key_id"] == a.key_id
        assert verifies(secret_a["secret"], delivery) and delivery.status == 204
        assert not verifies(secret_b, delivery) and not verifies(LOCAL_WEBHOOK_SECRET, delivery)

        rotated = a.post("/v1/webhooks/secret/rotate").json()
        assert rotated["secret"] != secret_a["secret"] and rotated["previous_secret_expires_at"]
        both = queued(hooks, a.queued_job(webhook_url=hooks.url, events=["job.queued"]), pipeline)
        assert verifies(secret_a["secret"], both) and verifies(rotated["secret"], both)


def test_the_python_client_manages_endpoints_and_the_keys_secret(pipeline):
    key = pipeline.api_key("pro", "client")
    with TalkstackClient(pipeline.api_url, key) as client:
        created = client.create_webhook(pipeline.hooks.url, events=["job.failed"], description="ops")
        assert created.secret.startswith("whsec_") and created.events == ["job.failed"]
        assert [w.id for w in client.list_webhooks().webhooks] == [created.id]
        assert client.get_webhook(created.id).description == "ops"
        rotated = client.rotate_webhook(created.id)
        assert rotated.secret != created.secret and rotated.previous_secret_expires_at is not None
        secret = client.webhook_secret()
        assert client.rotate_webhook_secret().secret != secret.secret
        client.delete_webhook(created.id)
        with pytest.raises(ApiError) as missing:
            client.get_webhook(created.id)
        assert missing.value.status == 404 and missing.value.code == "NOT_FOUND"


def test_a_failing_endpoint_is_paused_while_another_keys_is_served(pipeline, tenants):
    """One key's receiver answers 500: after two failed deliveries in a row its endpoint is paused
    (the third job's event is not attempted, and its report says until when); the other key's
    endpoint keeps receiving."""
    a, b = tenants
    trusted: dict[str, list[str]] = {}
    with (
        receiver(trusted) as dead,
        receiver(trusted) as healthy,
        pipeline.configured(webhook_pause_after_failures="2", webhook_max_attempts="1"),
    ):
        dead.fail_next([500] * 20)
        failing = a.post("/v1/webhooks", json={"url": dead.url, "events": ["job.queued"]}).json()
        served = b.post("/v1/webhooks", json={"url": healthy.url, "events": ["job.queued"]}).json()
        trusted.update({a.key_id: [failing["secret"]], b.key_id: [served["secret"]]})
        breaker = WebhookBreaker(
            pipeline.store.table, pipeline.store.ddb, BreakerPolicy(failures=2, pause_s=60, max_pause_s=3600)
        )

        for _ in range(2):
            queued(dead, a.queued_job(), pipeline)
        assert pipeline.wait_until(lambda: failing["id"] in breaker.paused(a.key_id), 30)

        paused_job = a.queued_job()
        reports = pipeline.wait_until(
            lambda: [r for r in pipeline.store.deliveries(paused_job) if r["event_type"] == "job.queued"], 30
        )
        (report,) = reports
        assert report["refused"].startswith("paused after 2 consecutive failed deliveries until ")
        assert report["attempts"] == [] and report["paused_until"] and report["endpoint_id"] == failing["id"]
        assert len(dead.received()) == 2 and dead.received(paused_job) == []
        # The event itself went out on SNS as always
        assert len(pipeline.sns.for_job(paused_job, "job.queued")) == 1

        other = b.queued_job()
        assert queued(healthy, other, pipeline).status == 204
        assert breaker.paused(b.key_id) == {}
        a.delete(f"/v1/webhooks/{failing['id']}")
        b.delete(f"/v1/webhooks/{served['id']}")
