// One avatar job end to end through the SDK: uploads, generate (idempotent), wait with progress,
// download the MP4, list it, and a cancel that comes too late.
import assert from "node:assert/strict";
import { before, describe, test } from "node:test";

import {
  TERMINAL_STATUSES,
  TalkstackTimeoutError,
  type JobAccepted,
  type JobView,
  type TalkstackClient,
} from "../src/index.js";
import { apiError, client, sample, testEnv } from "./helpers.js";

describe("an avatar job through the SDK", () => {
  let api: TalkstackClient;
  let image: Buffer;
  let audio: Buffer;
  let imageId: string;
  let audioId: string;
  let accepted: JobAccepted;
  let finished: JobView;
  const idempotencyKey = `sdk-test-${globalThis.crypto.randomUUID()}`;

  before(async () => {
    const env = testEnv();
    api = client(env);
    image = await sample(env, "portrait.png");
    audio = await sample(env, "speech.wav");
  });

  test("upload the portrait and the speech", async () => {
    imageId = await api.upload(image, { filename: "portrait.png", contentType: "image/png" });
    audioId = await api.upload(audio, { filename: "speech.wav", contentType: "audio/wav" });
    assert.match(imageId, /^upl_[a-z0-9]{24}$/);
    assert.match(audioId, /^upl_[a-z0-9]{24}$/);
    assert.notEqual(imageId, audioId);
  });

  test("generateAvatar answers 202 with a queued job", async () => {
    accepted = await api.generateAvatar(
      { inputs: { image: imageId, audio: audioId }, metadata: { suite: "typescript-sdk" } },
      { idempotencyKey },
    );
    assert.equal(accepted.task, "avatar");
    assert.ok(["queued", "running"].includes(accepted.status), accepted.status);
    assert.equal(accepted.links.self, `/v1/jobs/${accepted.job_id}`);
  });

  test("the same Idempotency-Key and body return the same job; another body is refused", async () => {
    const again = await api.generateAvatar(
      { inputs: { image: imageId, audio: audioId }, metadata: { suite: "typescript-sdk" } },
      { idempotencyKey },
    );
    assert.equal(again.job_id, accepted.job_id);
    const other = await apiError(
      api.generateAvatar({ inputs: { image: imageId, audio: audioId } }, { idempotencyKey }),
    );
    assert.equal(other.code, "IDEMPOTENCY_KEY_REUSED");
    assert.equal(other.status, 422);
  });

  test("waitForJob reports progress and ends completed", { timeout: 280_000 }, async () => {
    const seen: JobView[] = [];
    finished = await api.waitForJob(accepted.job_id, {
      pollMs: 250,
      timeoutMs: 270_000,
      onProgress: (job) => seen.push(job),
    });
    assert.equal(finished.status, "completed", JSON.stringify(finished.error));
    assert.equal(finished.progress, 1);
    assert.ok(seen.length >= 2, `onProgress calls: ${seen.length}`);
    assert.equal(seen.at(-1)!.status, "completed");
    const progress = seen.map((job) => job.progress);
    assert.deepEqual(
      progress,
      [...progress].sort((a, b) => a - b),
      `progress must never go back: ${progress.join(", ")}`,
    );
    assert.deepEqual(finished.metadata, { suite: "typescript-sdk" });
  });

  test("the video output downloads as an MP4 (ftyp box, > 10 kB)", async () => {
    const video = finished.result?.outputs.find((o) => o.kind === "video");
    assert.ok(video, `outputs: ${JSON.stringify(finished.result?.outputs)}`);
    assert.equal(video.content_type, "video/mp4");
    const bytes = await api.download(video.url);
    assert.ok(bytes.byteLength > 10_000, `${bytes.byteLength} bytes`);
    assert.equal(bytes.byteLength, video.bytes);
    assert.equal(Buffer.from(bytes.subarray(4, 8)).toString("latin1"), "ftyp");
  });

  test("listJobs includes the job", async () => {
    const { jobs } = await api.listJobs({ status: ["completed"], limit: 100 });
    const listed = jobs.find((job) => job.job_id === accepted.job_id);
    assert.ok(listed, `jobs: ${jobs.map((job) => job.job_id).join(", ")}`);
    assert.equal(listed.status, "completed");
    assert.equal(listed.task, "avatar");
  });

  test("getJob of the finished job carries its result", async () => {
    const job = await api.getJob(accepted.job_id);
    assert.equal(job.status, "completed");
    assert.ok((job.result?.duration_s ?? 0) > 1, JSON.stringify(job.result));
  });

  test("cancelJob on a finished job is 409 CONFLICT", async () => {
    const error = await apiError(api.cancelJob(accepted.job_id));
    assert.equal(error.status, 409);
    assert.equal(error.code, "CONFLICT");
    assert.equal((await api.getJob(accepted.job_id)).status, "completed");
  });

  test("cancelJob on a queued job cancels it; cancelling again answers the same", async () => {
    const job = await api.generateAvatar({ inputs: { image: imageId, audio: audioId } });
    assert.notEqual(job.job_id, accepted.job_id);
    const cancelled = await api.cancelJob(job.job_id);
    assert.equal(cancelled.status, "cancelled");
    const final = await api.waitForJob(job.job_id, { pollMs: 200, timeoutMs: 30_000 });
    assert.equal(final.status, "cancelled");
    assert.equal(final.result ?? null, null);
    assert.equal((await api.cancelJob(job.job_id)).status, "cancelled");
  });

  test("waitForJob rejects with TalkstackTimeoutError when the time is up", async () => {
    const job = await api.generateAvatar({ inputs: { image: imageId, audio: audioId } });
    try {
      const error = await api.waitForJob(job.job_id, { pollMs: 20, timeoutMs: 1 }).then(
        () => assert.fail("waitForJob resolved before its timeout"),
        (reason: unknown) => reason,
      );
      assert.ok(error instanceof TalkstackTimeoutError, String(error));
      assert.equal(error.jobId, job.job_id);
      assert.ok(error.job && !TERMINAL_STATUSES.has(error.job.status), JSON.stringify(error.job));
    } finally {
      await api.cancelJob(job.job_id);
    }
  });
});
