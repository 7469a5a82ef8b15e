// Templates through the SDK: the bundled ones, a key's own (invisible to another key), every
// variable problem at once, and a preview that renders in full as a new job.
import assert from "node:assert/strict";
import { before, describe, test } from "node:test";

import type { TalkstackClient, TemplateDocument, TemplateProblem } from "../src/index.js";
import { apiError, client, testEnv } from "./helpers.js";

describe("templates through the SDK", () => {
  let api: TalkstackClient;
  let other: TalkstackClient;
  before(() => {
    const env = testEnv();
    api = client(env);
    other = client({ ...env, apiKey: env.otherApiKey });
  });

  test("the bundled templates are listed and shown with their variables", async () => {
    const { templates } = await api.listTemplates();
    const social = templates.find((t) => t.id === "social-ad");
    assert.ok(social, JSON.stringify(templates));
    assert.equal(social.aspect, "9:16");
    assert.equal(social.source, "bundled");
    assert.ok(social.variables.includes("headline"));
    const shown = await api.getTemplate("social-ad");
    const variables = shown.template.variables as Record<string, { type: string }>;
    assert.equal(variables.headline?.type, "text");
  });

  test("a key's own template is nobody else's, and bad variables are listed at once", async () => {
    const social = (await api.getTemplate("social-ad")).template;
    const id = `sdk-ad-${Date.now().toString(36)}`;
    const stored = await api.putTemplate({ ...social, id, name: "SDK ad" } as unknown as TemplateDocument);
    assert.equal(stored.source, "own");
    const foreign = await apiError(other.getTemplate(id));
    assert.equal(foreign.status, 404);
    assert.equal(foreign.code, "NOT_FOUND");

    const refused = await apiError(api.generateFromTemplate(id, { variables: { nope: 1, brand_colour: "red" } }));
    assert.equal(refused.status, 422);
    assert.equal(refused.code, "TEMPLATE_VARIABLES_INVALID");
    const problems = (refused.details.problems as TemplateProblem[]).map((p) => `${p.variable}:${p.code}`);
    for (const expected of ["nope:unknown", "brand_colour:wrong_type", "headline:missing", "script:missing"]) {
      assert.ok(problems.includes(expected), `${expected} in ${problems.join(", ")}`);
    }
    await api.deleteTemplate(id);
    assert.equal((await apiError(api.getTemplate(id))).status, 404);
  });

  test("a preview renders in full as a new job; a full render does not", async () => {
    const example = (await api.getTemplate("social-ad")).template.example as Record<string, unknown>;
    const preview = await api.generateFromTemplate("social-ad", { variables: example, preview: true });
    assert.equal(preview.task, "composition");
    const full = await api.renderJob(preview.job_id);
    assert.notEqual(full.job_id, preview.job_id);
    const again = await apiError(api.renderJob(full.job_id));
    assert.equal(again.status, 409);
    assert.equal(again.code, "CONFLICT");
    await api.cancelJob(preview.job_id);
    await api.cancelJob(full.job_id);
  });
});
