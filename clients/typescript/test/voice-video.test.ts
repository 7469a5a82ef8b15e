// The other two generation endpoints: a voice job (lite-voice runs on the local workers) and a
// video request, which this stack accepts only if a GPU backend serves the model.
import assert from "node:assert/strict";
import { before, describe, test } from "node:test";

import type { TalkstackClient } from "../src/index.js";
import { apiError, client, testEnv } from "./helpers.js";

describe("voice and video through the SDK", () => {
  let api: TalkstackClient;
  before(() => {
    api = client(testEnv());
  });

  test("cloneVoice speaks text and the WAV downloads", { timeout: 120_000 }, async () => {
    const accepted = await api.cloneVoice({ inputs: { text: "Hello from the TypeScript SDK." } });
    assert.equal(accepted.task, "voice");
    const job = await api.waitForJob(accepted.job_id, { pollMs: 250, timeoutMs: 110_000 });
    assert.equal(job.status, "completed", JSON.stringify(job.error));
    const audio = job.result?.outputs.find((o) => o.kind === "audio");
    assert.ok(audio, JSON.stringify(job.result));
    const bytes = Buffer.from(await api.download(audio.url));
    assert.equal(bytes.byteLength, audio.bytes);
    assert.equal(bytes.subarray(0, 4).toString("latin1"), "RIFF");
    assert.equal(bytes.subarray(8, 12).toString("latin1"), "WAVE");
  });

  test("generateVideo is refused as listModels says when no backend runs the model", async () => {
    const { models } = await api.listModels();
    const ltx = models.find((m) => m.id === "ltx-video");
    assert.ok(ltx, "ltx-video is listed");
    if (ltx.available) {
      const accepted = await api.generateVideo({ inputs: { prompt: "a lighthouse at dusk" } });
      assert.equal(accepted.task, "video");
      await api.cancelJob(accepted.job_id);
    } else {
      const error = await apiError(api.generateVideo({ inputs: { prompt: "a lighthouse at dusk" } }));
      assert.equal(error.status, 422);
      assert.equal(error.code, "MODEL_UNAVAILABLE");
      assert.equal(error.details.model, "ltx-video");
    }
  });

  test("a request body the API refuses is 400 INVALID_REQUEST naming the field", async () => {
    // @ts-expect-error: `inputs` is required by the generated type; the API says so too.
    const error = await apiError(api.cloneVoice({ options: {} }));
    assert.equal(error.status, 400);
    assert.equal(error.code, "INVALID_REQUEST");
    assert.match(error.message, /inputs/);
  });
});
