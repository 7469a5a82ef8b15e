"""Input moderation through the real local stack: a job submitted over HTTP whose script is in a
blocked category fails with CONTENT_REFUSED before any engine runs; the same script passes for a
key the policy's override covers (the policy given inline, as an operator would set it)."""

from __future__ import annotations

import json

from talkstack.api.keys import KEY_RE
from talkstack.contract.state import Plan
from talkstack.safety.policy import DEFAULT_POLICY_PATH
from tests.integration.test_api import Api

SCRIPT = "Say it plainly: kill yourself."  # the shipped policy's harassment category


def voice_job(api: Api) -> str:
    answer = api.post("/v1/voice/clone", json={"inputs": {"text": SCRIPT}})
    assert answer.status_code == 202, answer.text
    return answer.json()["job_id"]


def test_a_blocked_script_is_refused_before_any_engine_runs(pipeline):
    api = Api(pipeline.api_url, pipeline.api_key("enterprise", "moderation"))
    job_id = voice_job(api)
    job = api.wait(job_id, timeout_s=60)
    assert job["status"] == "failed"
    assert job["error"]["code"] == "CONTENT_REFUSED" and job["error"]["step"] == "moderate"
    assert job["error"]["details"]["category"] == "harassment"
    assert job["error"]["details"]["policy_version"] == "default-2026-12-07"
    assert "kill" not in job["error"]["message"]
    assert job["moderation"]["decision"] == "refused" and job["moderation"]["classifier"] == "none"
    # Nothing was planned or dispatched: the only step is moderate, no attempt token, no plan.
    assert [s["name"] for s in job["steps"]] == ["moderate"]
    assert pipeline.store.attempt_tokens(job_id) == {}
    assert pipeline.store.get_step_result(job_id, "plan", Plan) is None
    assert pipeline.keys(pipeline.r.work_bucket, f"work/{job_id}/") == {}


def test_the_same_script_passes_for_a_key_the_policy_overrides(pipeline):
    key = pipeline.api_key("enterprise", "moderation-override")
    api = Api(pipeline.api_url, key)
    key_id = KEY_RE.fullmatch(key)["id"]
    policy = json.loads(DEFAULT_POLICY_PATH.read_text())
    policy["version"] = "test-override-1"
    policy["keys"] = {key_id: {"allow_categories": ["harassment"]}}
    with pipeline.configured(moderation_policy=json.dumps(policy)):
        job = api.wait(voice_job(api), timeout_s=90)
    assert job["status"] == "completed", job["error"]
    assert job["moderation"]["decision"] == "allowed"
    assert job["moderation"]["policy_version"] == "test-override-1"
    assert job["moderation"]["allowed_by_key"] == ["harassment"]
    assert [s["name"] for s in job["steps"]][:2] == ["moderate", "voice"]
