// tsc does not emit .d.ts sources: copy the generated schema next to dist/src/index.d.ts,
// whose type imports ("./schema.js") resolve to it.
import { copyFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const root = join(dirname(fileURLToPath(import.meta.url)), "..");
copyFileSync(join(root, "src", "schema.d.ts"), join(root, "dist", "src", "schema.d.ts"));
