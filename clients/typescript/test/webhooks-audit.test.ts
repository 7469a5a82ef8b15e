// Webhook endpoints, the key's signing secret and the audit trail through the SDK, with two
// tenants: the "owner" (TALKSTACK_OTHER_API_KEY) registers an endpoint, the "stranger"
// (TALKSTACK_API_KEY) may not see it. The endpoint is a receiver on 127.0.0.1 that this file runs,
// so the stack must allow loopback webhooks (`talkstack up` does).
import assert from "node:assert/strict";
import { createHmac, timingSafeEqual } from "node:crypto";
import { createServer, type IncomingHttpHeaders, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { after, before, describe, test } from "node:test";

import {
  TalkstackApiError,
  type AuditAction,
  type AuditEntry,
  type FetchLike,
  type TalkstackClient,
  type WebhookCreated,
} from "../src/index.js";
import { apiError, client, errorResponse, sample, testEnv, type TestEnv } from "./helpers.js";

interface Delivery {
  headers: IncomingHttpHeaders;
  body: string;
}

/** Records every POST it gets and answers 204, as a receiver that accepted the event would. */
class Receiver {
  readonly deliveries: Delivery[] = [];
  private readonly server: Server = createServer((request, response) => {
    const chunks: Buffer[] = [];
    request.on("data", (chunk: Buffer) => chunks.push(chunk));
    request.on("end", () => {
      this.deliveries.push({ headers: request.headers, body: Buffer.concat(chunks).toString("utf8") });
      response.writeHead(204).end();
    });
  });

  async start(): Promise<string> {
    await new Promise<void>((resolve) => this.server.listen(0, "127.0.0.1", resolve));
    return `http://127.0.0.1:${(this.server.address() as AddressInfo).port}/hooks`;
  }

  async stop(): Promise<void> {
    this.server.closeAllConnections();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }

  /** The first delivery whose event matches, within `timeoutMs`. */
  async waitFor(match: (event: Record<string, unknown>) => boolean, timeoutMs = 30_000): Promise<Delivery> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const found = this.deliveries.find((d) => match(JSON.parse(d.body) as Record<string, unknown>));
      if (found) return found;
      if (Date.now() > deadline) {
        throw new Error(`no matching delivery in ${timeoutMs} ms (${this.deliveries.length} others)`);
      }
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
  }
}

/** Standard Webhooks: one of the `v1,<base64 HMAC-SHA256 of "id.timestamp.body">` signatures matches. */
function verifies(secret: string, delivery: Delivery): boolean {
  const key = Buffer.from(secret.replace(/^whsec_/, ""), "base64");
  const signed = `${delivery.headers["webhook-id"]}.${delivery.headers["webhook-timestamp"]}.${delivery.body}`;
  const expected = createHmac("sha256", key).update(signed).digest();
  return String(delivery.headers["webhook-signature"] ?? "")
    .split(" ")
    .filter((part) => part.startsWith("v1,"))
    .map((part) => Buffer.from(part.slice(3), "base64"))
    .some((given) => given.length === expected.length && timingSafeEqual(given, expected));
}

const keyId = (key: string) => key.split("_")[1]!;
const WEBHOOK_ACTIONS: AuditAction[] = ["webhook.created", "webhook.rotated", "webhook.secret_read", "webhook.deleted"];
const MISSING = `wh_${"0".repeat(24)}`;

describe("webhooks and the audit trail through the SDK", () => {
  let env: TestEnv;
  let owner: TalkstackClient;
  let stranger: TalkstackClient;
  const receiver = new Receiver();
  let url: string;
  let endpoint: WebhookCreated;
  let rotated: WebhookCreated;
  let keySecrets: string[] = [];
  let created: AuditEntry;

  before(async () => {
    env = testEnv();
    owner = client(env, { apiKey: env.otherApiKey });
    stranger = client(env);
    url = await receiver.start();
  });

  after(async () => {
    // Leave nothing registered if a test failed halfway
    for (const { id } of (await owner.listWebhooks().catch(() => ({ webhooks: [] }))).webhooks) {
      await owner.deleteWebhook(id).catch(() => undefined);
    }
    await receiver.stop();
  });

  test("createWebhook answers the endpoint and its whsec_ secret; list and get never show the secret", async () => {
    endpoint = await owner.createWebhook({ url, events: ["job.queued"], description: "sdk test" });
    assert.match(endpoint.id, /^wh_[a-z0-9]{24}$/);
    assert.match(endpoint.secret, /^whsec_/);
    assert.deepEqual(endpoint.events, ["job.queued"]);
    assert.equal(endpoint.url, url);
    assert.equal(endpoint.description, "sdk test");
    assert.equal(endpoint.previous_secret_expires_at ?? null, null);

    const { webhooks } = await owner.listWebhooks();
    assert.deepEqual(
      webhooks.map((w) => w.id),
      [endpoint.id],
    );
    assert.ok(!("secret" in webhooks[0]!));
    const one = await owner.getWebhook(endpoint.id);
    assert.equal(one.id, endpoint.id);
    assert.equal(one.url, url);
    assert.ok(!("secret" in one));
  });

  test("a job's event reaches the endpoint signed with its secret, not with another key's", async () => {
    const image = await owner.upload(await sample(env, "portrait.png"), {
      filename: "portrait.png",
      contentType: "image/png",
    });
    const job = await owner.generateAvatar({ inputs: { image, text: "Never said." } });
    await owner.cancelJob(job.job_id); // job.queued is raised by the submission itself
    const delivery = await receiver.waitFor((e) => e.job_id === job.job_id && e.type === "job.queued");
    const event = JSON.parse(delivery.body) as Record<string, unknown>;
    assert.equal(event.api_key_id, keyId(env.otherApiKey));
    assert.ok(verifies(endpoint.secret, delivery), JSON.stringify(delivery.headers));
    const strangers = await stranger.getWebhookSecret();
    assert.ok(!verifies(strangers.secret, delivery));
  });

  test("another key's endpoint is NOT_FOUND to get, rotate and delete, like one that never existed", async () => {
    const calls = [
      (id: string) => stranger.getWebhook(id),
      (id: string) => stranger.rotateWebhook(id),
      (id: string) => stranger.deleteWebhook(id),
    ];
    for (const call of calls) {
      const theirs = await apiError(call(endpoint.id));
      const nobodys = await apiError(call(MISSING));
      assert.ok(theirs instanceof TalkstackApiError);
      assert.equal(theirs.status, 404);
      assert.equal(theirs.code, "NOT_FOUND");
      assert.equal(nobodys.code, "NOT_FOUND");
      assert.equal(theirs.message.replace(endpoint.id, "ID"), nobodys.message.replace(MISSING, "ID"));
    }
    const { webhooks } = await stranger.listWebhooks();
    assert.ok(!webhooks.some((w) => w.id === endpoint.id));
    assert.equal((await owner.getWebhook(endpoint.id)).id, endpoint.id, "untouched by the stranger's calls");
  });

  test("rotateWebhook gives a new secret; the old one still signs until previous_secret_expires_at", async () => {
    rotated = await owner.rotateWebhook(endpoint.id);
    assert.equal(rotated.id, endpoint.id);
    assert.match(rotated.secret, /^whsec_/);
    assert.notEqual(rotated.secret, endpoint.secret);
    const overlapEnds = Date.parse(rotated.previous_secret_expires_at ?? "");
    assert.ok(overlapEnds > Date.now() - 60_000, `previous_secret_expires_at: ${rotated.previous_secret_expires_at}`);
    const view = await owner.getWebhook(endpoint.id);
    assert.equal(view.previous_secret_expires_at, rotated.previous_secret_expires_at);
  });

  test("the key's own secret: one per key, rotated with an overlap", async () => {
    const first = await owner.getWebhookSecret();
    assert.match(first.secret, /^whsec_/);
    assert.notEqual(first.secret, (await stranger.getWebhookSecret()).secret);
    const next = await owner.rotateWebhookSecret();
    assert.notEqual(next.secret, first.secret);
    assert.ok(next.previous_secret_expires_at, JSON.stringify(next));
    assert.equal((await owner.getWebhookSecret()).secret, next.secret);
    keySecrets = [first.secret, next.secret];
  });

  test("deleteWebhook resolves with nothing; the endpoint is gone", async () => {
    assert.equal(await owner.deleteWebhook(endpoint.id), undefined);
    assert.equal((await apiError(owner.getWebhook(endpoint.id))).code, "NOT_FOUND");
    assert.equal((await apiError(owner.deleteWebhook(endpoint.id))).status, 404);
    assert.ok(!(await owner.listWebhooks()).webhooks.some((w) => w.id === endpoint.id));
  });

  test("getAuditTrail lists the webhook actions just done, in order, page by page, without secrets", async () => {
    const newest = await owner.getAuditTrail({ action: "webhook.created", limit: 1 });
    created = newest.entries[0]!;
    assert.equal(created.object.id, endpoint.id);

    // From that entry on (the server's clock), oldest first: exactly this file's webhook actions
    const all = await owner.getAuditTrail({ action: WEBHOOK_ACTIONS, start: created.time, order: "oldest" });
    const expected = [
      ["webhook.created", endpoint.id],
      ["webhook.rotated", endpoint.id],
      ["webhook.secret_read", "key-secret"], // the key's own secret: read, rotated, read again
      ["webhook.rotated", "key-secret"],
      ["webhook.secret_read", "key-secret"],
      ["webhook.deleted", endpoint.id],
    ];
    assert.deepEqual(
      all.entries.map((e) => [e.action, e.object.id]),
      expected,
    );
    assert.deepEqual(new Set(all.entries.map((e) => e.key_id)), new Set([keyId(env.otherApiKey)]));
    assert.ok(all.entries.every((e) => e.source_ip.length > 0 && e.request_id));
    const text = JSON.stringify(all);
    for (const secret of [endpoint.secret, rotated.secret, ...keySecrets]) assert.ok(!text.includes(secret));

    // The same entries two at a time, following next_cursor with the same filters
    const paged: AuditEntry[] = [];
    let cursor: string | null | undefined;
    do {
      const page = await owner.getAuditTrail({
        action: WEBHOOK_ACTIONS.join(","),
        start: new Date(created.time),
        order: "oldest",
        limit: 2,
        cursor,
      });
      assert.ok(page.entries.length <= 2);
      paged.push(...page.entries);
      cursor = page.next_cursor;
    } while (cursor);
    assert.deepEqual(
      paged.map((e) => e.entry_id),
      all.entries.map((e) => e.entry_id),
    );

    // Newest first is the default
    const latest = await owner.getAuditTrail({ action: WEBHOOK_ACTIONS, limit: 1 });
    assert.equal(latest.entries[0]?.action, "webhook.deleted");
  });

  test("the stranger's trail holds none of the owner's entries, and the owner's cursor opens nothing", async () => {
    const theirs = await stranger.getAuditTrail({ limit: 100 });
    assert.ok(theirs.entries.length > 0, "the stranger read its own secret: that is in its trail");
    assert.ok(theirs.entries.every((e) => e.key_id === keyId(env.apiKey)));
    assert.ok(!theirs.entries.some((e) => e.object.id === endpoint.id));

    const first = await owner.getAuditTrail({ order: "oldest", limit: 1 });
    assert.ok(first.next_cursor, "the owner has more than one entry");
    const stolen = await apiError(stranger.getAuditTrail({ order: "oldest", limit: 1, cursor: first.next_cursor }));
    assert.equal(stolen.status, 400);
    assert.equal(stolen.code, "INVALID_REQUEST");
    const unknown = await apiError(owner.getAuditTrail({ action: "job.exploded" as AuditAction }));
    assert.equal(unknown.code, "INVALID_REQUEST");
    assert.match(unknown.message, /job\.exploded/);
  });

  test("creating and rotating are retried after a 429 only: a 5xx or a lost answer may hide a change", async () => {
    let calls = 0;
    const failing: FetchLike = async () => {
      calls += 1;
      return errorResponse(503, "GENERATION_FAILED", { "Retry-After": "0" });
    };
    const down = client(env, { apiKey: env.otherApiKey, fetch: failing, retryBaseDelayMs: 1 });
    assert.equal((await apiError(down.createWebhook({ url }))).status, 503);
    assert.equal((await apiError(down.rotateWebhook(MISSING))).status, 503);
    assert.equal((await apiError(down.rotateWebhookSecret())).status, 503);
    assert.equal(calls, 3, "one attempt each");

    let lost = 0;
    const unreachable: FetchLike = async () => {
      lost += 1;
      throw new TypeError("fetch failed");
    };
    const offline = client(env, { apiKey: env.otherApiKey, fetch: unreachable, retryBaseDelayMs: 1 });
    await assert.rejects(offline.createWebhook({ url }), TypeError);
    assert.equal(lost, 1);

    let limited = 0;
    const rateLimited: FetchLike = async (input, init) => {
      limited += 1;
      if (limited === 1) return errorResponse(429, "RATE_LIMITED", { "Retry-After": "0" });
      return fetch(input, init);
    };
    const once = client(env, { apiKey: env.otherApiKey, fetch: rateLimited });
    const made = await once.createWebhook({ url, events: ["job.failed"] });
    assert.equal(limited, 2);
    assert.deepEqual(
      (await owner.listWebhooks()).webhooks.map((w) => w.id),
      [made.id],
      "one endpoint, not two",
    );
    await owner.deleteWebhook(made.id);

    // Reads are retried as before
    let reads = 0;
    const flaky: FetchLike = async (input, init) => {
      reads += 1;
      if (reads === 1) return errorResponse(503, "GENERATION_FAILED", { "Retry-After": "0" });
      return fetch(input, init);
    };
    await client(env, { apiKey: env.otherApiKey, fetch: flaky }).listWebhooks();
    assert.equal(reads, 2);
  });
});
