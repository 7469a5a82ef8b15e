// The client against the live API: health, auth, errors, models, usage, and its retry rules
// (a custom fetch injects the 429 / 5xx / network failures, then hands over to the real fetch).
import assert from "node:assert/strict";
import { before, describe, test } from "node:test";

import { TalkstackApiError, TalkstackClient, parseRetryAfter, type FetchLike } from "../src/index.js";
import { apiError, client, errorResponse, testEnv, type TestEnv } from "./helpers.js";

describe("TalkstackClient against the live API", () => {
  let env: TestEnv;
  let api: TalkstackClient;
  before(() => {
    env = testEnv();
    api = client(env);
  });

  test("health answers ok with the version", async () => {
    const health = await api.health();
    assert.equal(health.status, "ok");
    assert.match(health.version, /^\d+\.\d+\.\d+/);
    assert.ok(!Number.isNaN(Date.parse(health.time)), `time: ${health.time}`);
  });

  test("a wrong key is 401 UNAUTHORIZED", async () => {
    const wrong = client(env, { apiKey: "tsk_wrong_key_0000000000000000000000" });
    const error = await apiError(wrong.listModels());
    assert.ok(error instanceof TalkstackApiError);
    assert.equal(error.status, 401);
    assert.equal(error.code, "UNAUTHORIZED");
    assert.ok(error.message.length > 0);
    assert.deepEqual(error.details, {});
  });

  test("listModels includes lite-avatar, available on this stack", async () => {
    const { models } = await api.listModels();
    const lite = models.find((m) => m.id === "lite-avatar");
    assert.ok(lite, `models: ${models.map((m) => m.id).join(", ")}`);
    assert.equal(lite.task, "avatar");
    assert.equal(lite.available, true, lite.unavailable_reason ?? "");
    assert.ok(lite.licence.length > 0);
  });

  test("getJob of an unknown id is 404 NOT_FOUND", async () => {
    const error = await apiError(api.getJob("avatar-0000000000000000"));
    assert.equal(error.status, 404);
    assert.equal(error.code, "NOT_FOUND");
    assert.match(error.message, /avatar-0000000000000000/);
  });

  test("an invalid query is 400 INVALID_REQUEST with details", async () => {
    const error = await apiError(api.listJobs({ status: "finished" }));
    assert.equal(error.status, 400);
    assert.equal(error.code, "INVALID_REQUEST");
    assert.match(error.message, /status/);
    const tooMany = await apiError(api.listJobs({ limit: 1000 }));
    assert.equal(tooMany.status, 400);
    assert.equal(tooMany.code, "INVALID_REQUEST");
    assert.ok(Array.isArray(tooMany.details.errors), JSON.stringify(tooMany.details));
  });

  test("an unsupported media type is refused before any upload (415 UNSUPPORTED_MEDIA)", async () => {
    const error = await apiError(
      api.upload(new TextEncoder().encode("not media"), { filename: "notes.txt", contentType: "text/plain" }),
    );
    assert.equal(error.status, 415);
    assert.equal(error.code, "UNSUPPORTED_MEDIA");
  });

  test("getUsage reports the key's tier and limits", async () => {
    const usage = await api.getUsage({ period: "day", start: new Date(Date.now() - 2 * 86_400_000) });
    assert.equal(usage.period, "day");
    assert.equal(usage.tier, "enterprise");
    assert.ok((usage.limits.requests_per_minute ?? 0) > 0, JSON.stringify(usage.limits));
    assert.ok(Array.isArray(usage.buckets));
  });

  test("a 429 with Retry-After: 1 is retried after a second, then succeeds", async () => {
    const calls: number[] = [];
    const flaky: FetchLike = async (input, init) => {
      calls.push(Date.now());
      if (calls.length === 1) return errorResponse(429, "RATE_LIMITED", { "Retry-After": "1" });
      return fetch(input, init);
    };
    const started = Date.now();
    const { models } = await client(env, { fetch: flaky }).listModels();
    const waited = Date.now() - started;
    assert.ok(models.length > 0);
    assert.equal(calls.length, 2);
    assert.ok(calls[1]! - calls[0]! >= 950, `retried after ${calls[1]! - calls[0]!} ms`);
    assert.ok(waited >= 950, `took ${waited} ms`);
  });

  test("a 429 without the header waits details.retry_after_s (what a browser sees without CORS exposure)", async () => {
    const calls: number[] = [];
    const flaky: FetchLike = async (input, init) => {
      calls.push(Date.now());
      if (calls.length === 1) {
        const body = { error: { code: "RATE_LIMITED", message: "slow down", details: { retry_after_s: 1 } } };
        return new Response(JSON.stringify(body), { status: 429, headers: { "Content-Type": "application/json" } });
      }
      return fetch(input, init);
    };
    const page = await client(env, { fetch: flaky, retryBaseDelayMs: 1 }).listJobs({ limit: 1 });
    assert.ok(page.jobs.length <= 1);
    assert.equal(calls.length, 2);
    assert.ok(calls[1]! - calls[0]! >= 950, `retried after ${calls[1]! - calls[0]!} ms`);
  });

  test("a 429 that outlasts the retries surfaces as RATE_LIMITED with retryAfter", async () => {
    const limited: FetchLike = async () => errorResponse(429, "RATE_LIMITED", { "Retry-After": "0" });
    const error = await apiError(client(env, { fetch: limited, maxRetries: 1 }).health());
    assert.equal(error.status, 429);
    assert.equal(error.code, "RATE_LIMITED");
    assert.equal(error.retryAfter, 0);
  });

  test("5xx and network errors are retried with backoff; 4xx never", async () => {
    let calls = 0;
    const failing: FetchLike = async (input, init) => {
      calls += 1;
      if (calls === 1) throw new TypeError("fetch failed");
      if (calls === 2) return errorResponse(503, "GENERATION_FAILED");
      return fetch(input, init);
    };
    const fast = { retryBaseDelayMs: 10, retryMaxDelayMs: 50 };
    assert.equal((await client(env, { fetch: failing, ...fast }).health()).status, "ok");
    assert.equal(calls, 3);

    let unauthorized = 0;
    const counting: FetchLike = async (input, init) => {
      unauthorized += 1;
      return fetch(input, init);
    };
    const wrong = client(env, { apiKey: "tsk_wrong_key_0000000000000000000000", fetch: counting, ...fast });
    assert.equal((await apiError(wrong.getJob("avatar-0000000000000000"))).status, 401);
    assert.equal(unauthorized, 1, "a 401 must not be retried");
  });

  test("retries stop after maxRetries and the last error is thrown", async () => {
    let calls = 0;
    const down: FetchLike = async () => {
      calls += 1;
      return errorResponse(502, "GENERATION_FAILED", { "Retry-After": "0" });
    };
    const error = await apiError(client(env, { fetch: down, maxRetries: 2 }).listModels());
    assert.equal(error.status, 502);
    assert.equal(error.code, "GENERATION_FAILED");
    assert.equal(error.retryAfter, 0);
    assert.equal(calls, 3);
  });

  test("parseRetryAfter reads seconds and HTTP dates", () => {
    assert.equal(parseRetryAfter("3"), 3000);
    assert.equal(parseRetryAfter(null), undefined);
    assert.equal(parseRetryAfter("soon"), undefined);
    const now = Date.parse("2026-01-01T00:00:00Z");
    assert.equal(parseRetryAfter("Thu, 01 Jan 2026 00:00:05 GMT", now), 5000);
  });

  test("the constructor needs a base URL and a key", () => {
    assert.throws(() => new TalkstackClient({ baseUrl: "", apiKey: "k" }), TypeError);
    assert.throws(() => new TalkstackClient({ baseUrl: env.apiUrl, apiKey: "" }), TypeError);
  });
});
