// src/schema.d.ts from the API's OpenAPI document (../../schemas/openapi.json).
// `node scripts/generate.mjs` writes it; `--check` exits 1 if the committed file is out of date.
// The options live here only, so `npm run generate` and the sync test cannot drift apart.
import { spawnSync } from "node:child_process";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const root = join(dirname(fileURLToPath(import.meta.url)), "..");
const cli = join(root, "node_modules", "openapi-typescript", "bin", "cli.js");
const args = [
  cli,
  join(root, "..", "..", "schemas", "openapi.json"),
  "--output",
  join(root, "src", "schema.d.ts"),
  // Properties with a default are optional in what a client sends (e.g. `task`, `callback_id`).
  "--default-non-nullable",
  "false",
];
if (process.argv.includes("--check")) args.push("--check");

const run = spawnSync(process.execPath, args, { cwd: root, stdio: "inherit" });
if (run.status !== 0 && process.argv.includes("--check")) {
  console.error("src/schema.d.ts is out of date with schemas/openapi.json: run `npm run generate`.");
}
process.exit(run.status ?? 1);
