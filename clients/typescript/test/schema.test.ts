// src/schema.d.ts must be what openapi-typescript makes of schemas/openapi.json today.
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { dirname, join } from "node:path";
import { test } from "node:test";
import { fileURLToPath } from "node:url";

const root = join(dirname(fileURLToPath(import.meta.url)), "..", "..");

test("src/schema.d.ts is in sync with schemas/openapi.json", () => {
  const run = spawnSync(process.execPath, [join(root, "scripts", "generate.mjs"), "--check"], {
    cwd: root,
    encoding: "utf8",
  });
  assert.equal(run.status, 0, `${run.stdout}\n${run.stderr}`);
});
