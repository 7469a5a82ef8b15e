// Shared by the test files: the live API they run against, from the environment.
// Missing settings fail every test with one clear message; nothing is skipped.
import { existsSync } from "node:fs";
import { readFile } from "node:fs/promises";
import { join } from "node:path";

import { TalkstackApiError, TalkstackClient, type TalkstackClientOptions } from "../src/index.js";

export interface TestEnv {
  apiUrl: string;
  apiKey: string;
  /** A second key of the same stack: another tenant (the webhook and audit tests). */
  otherApiKey: string;
  samples: string;
}

const HOW =
  "these tests run against a live talkstack API. `make test` sets them " +
  "(tests/integration/test_typescript_sdk.py); by hand: `talkstack up --port 4700`, " +
  "`talkstack keys create --tier enterprise --port 4700` twice, then TALKSTACK_API_URL=http://127.0.0.1:4710 " +
  "TALKSTACK_API_KEY=<key> TALKSTACK_OTHER_API_KEY=<another key> " +
  "TALKSTACK_SAMPLES=<repo>/talkstack/assets/samples npm test";

export function testEnv(): TestEnv {
  const names = ["TALKSTACK_API_URL", "TALKSTACK_API_KEY", "TALKSTACK_OTHER_API_KEY", "TALKSTACK_SAMPLES"] as const;
  const missing = names.filter((name) => !process.env[name]);
  if (missing.length > 0) throw new Error(`${missing.join(", ")} not set: ${HOW}`);
  const env = {
    apiUrl: process.env.TALKSTACK_API_URL!,
    apiKey: process.env.TALKSTACK_API_KEY!,
    otherApiKey: process.env.TALKSTACK_OTHER_API_KEY!,
    samples: process.env.TALKSTACK_SAMPLES!,
  };
  for (const file of ["portrait.png", "speech.wav"]) {
    if (!existsSync(join(env.samples, file))) {
      throw new Error(`TALKSTACK_SAMPLES=${env.samples} has no ${file} (expected talkstack/assets/samples)`);
    }
  }
  if (env.otherApiKey === env.apiKey) throw new Error(`TALKSTACK_OTHER_API_KEY must be another key: ${HOW}`);
  return env;
}

export function client(env: TestEnv, options: Partial<TalkstackClientOptions> = {}): TalkstackClient {
  return new TalkstackClient({ baseUrl: env.apiUrl, apiKey: env.apiKey, ...options });
}

export function sample(env: TestEnv, name: string): Promise<Buffer> {
  return readFile(join(env.samples, name));
}

/** The TalkstackApiError a call must fail with. */
export async function apiError(promise: Promise<unknown>): Promise<TalkstackApiError> {
  try {
    await promise;
  } catch (error) {
    if (error instanceof TalkstackApiError) return error;
    throw error;
  }
  throw new Error("expected the call to fail with a TalkstackApiError, but it succeeded");
}

export function errorResponse(status: number, code: string, headers: Record<string, string> = {}): Response {
  const body = JSON.stringify({ error: { code, message: `synthetic ${status}`, details: {} } });
  return new Response(body, { status, headers: { "Content-Type": "application/json", ...headers } });
}
