/**
 * TensorFlow.js backend selection.
 *
 * The library codes against `@tensorflow/tfjs-core` only. At start-up it picks the
 * fastest backend that actually works here: the native TensorFlow bindings
 * (`@tensorflow/tfjs-node-gpu`, then `@tensorflow/tfjs-node`) when a user installed
 * them, else WebAssembly, else plain JavaScript. `ESMKIT_BACKEND` or the `backend`
 * option forces one.
 */
import * as tf from "@tensorflow/tfjs-core";
import { BackendError } from "./errors";
import { ensureGradients } from "./gradients";

// Training needs gradient functions, which tfjs-core alone does not register in Node.
ensureGradients();

export const BACKEND_NAMES = ["tensorflow-gpu", "tensorflow", "wasm", "cpu"] as const;
export type BackendName = (typeof BACKEND_NAMES)[number];
export type BackendChoice = BackendName | "auto";

/** Which npm package provides each backend. */
export const BACKEND_PACKAGES: Record<BackendName, string> = {
  "tensorflow-gpu": "@tensorflow/tfjs-node-gpu",
  tensorflow: "@tensorflow/tfjs-node",
  wasm: "@tensorflow/tfjs-backend-wasm",
  cpu: "@tensorflow/tfjs-backend-cpu",
};

/** Name under which each package registers itself with tfjs-core. */
const TFJS_NAME: Record<BackendName, string> = {
  "tensorflow-gpu": "tensorflow",
  tensorflow: "tensorflow",
  wasm: "wasm",
  cpu: "cpu",
};

export interface BackendAttempt {
  backend: BackendName;
  ok: boolean;
  /** Why it was not used (package missing, failed to initialise). */
  reason?: string;
}

export interface BackendInfo {
  /** Our name for the backend in use. */
  name: BackendName;
  /** The npm package behind it. */
  package: string;
  /** The tfjs-core backend name (`tf.getBackend()`). */
  tfjsName: string;
  /** How it was chosen: an explicit option, the environment variable, or auto. */
  source: "option" | "env" | "auto";
  /** Everything tried, in order, with the reason for each failure. */
  attempts: BackendAttempt[];
}

export interface BackendOptions {
  /** Force a backend; default: `ESMKIT_BACKEND` or "auto". */
  backend?: BackendChoice;
  /** How packages are loaded; tests inject a fake. Default: `require`. */
  load?: (pkg: string) => unknown;
  /** Environment to read `ESMKIT_BACKEND` from; default `process.env`. */
  env?: NodeJS.ProcessEnv;
}

let active: BackendInfo | undefined;

export function parseBackendChoice(value: string, origin: string): BackendChoice {
  const v = value.trim().toLowerCase();
  if (v === "auto" || (BACKEND_NAMES as readonly string[]).includes(v)) return v as BackendChoice;
  throw new BackendError(
    `Unknown backend "${value}" (from ${origin}); expected one of: auto, ${BACKEND_NAMES.join(", ")}`,
    { value, origin },
  );
}

function describe(e: unknown): string {
  const msg = e instanceof Error ? e.message : String(e);
  return msg.split("\n")[0] ?? msg;
}

async function tryBackend(
  name: BackendName,
  load: (pkg: string) => unknown,
): Promise<BackendAttempt> {
  try {
    load(BACKEND_PACKAGES[name]);
  } catch (e) {
    return {
      backend: name,
      ok: false,
      reason: `cannot load ${BACKEND_PACKAGES[name]}: ${describe(e)}`,
    };
  }
  try {
    const ok = await tf.setBackend(TFJS_NAME[name]);
    if (!ok) return { backend: name, ok: false, reason: "failed to initialise" };
    await tf.ready();
    // A tiny op proves the kernels run, not only that the module loaded.
    const probe = tf.tidy(() => tf.add(tf.scalar(1), tf.scalar(2)).dataSync()[0]);
    if (probe !== 3) return { backend: name, ok: false, reason: `probe computed ${probe}` };
    return { backend: name, ok: true };
  } catch (e) {
    return { backend: name, ok: false, reason: `failed to initialise: ${describe(e)}` };
  }
}

/**
 * Choose and activate a backend. Forced choices fail loudly when unavailable (a user
 * who asked for the GPU should not silently get wasm); auto falls through the list.
 */
export async function selectBackend(options: BackendOptions = {}): Promise<BackendInfo> {
  const env = options.env ?? process.env;
  const load = options.load ?? ((pkg: string) => require(pkg));
  let choice: BackendChoice = "auto";
  let source: BackendInfo["source"] = "auto";
  if (options.backend !== undefined) {
    choice = parseBackendChoice(options.backend, "the backend option");
    source = choice === "auto" ? "auto" : "option";
  } else if (env.ESMKIT_BACKEND) {
    choice = parseBackendChoice(env.ESMKIT_BACKEND, "ESMKIT_BACKEND");
    source = choice === "auto" ? "auto" : "env";
  }
  const order: readonly BackendName[] = choice === "auto" ? BACKEND_NAMES : [choice];
  const attempts: BackendAttempt[] = [];
  for (const name of order) {
    const attempt = await tryBackend(name, load);
    attempts.push(attempt);
    if (attempt.ok) {
      active = {
        name,
        package: BACKEND_PACKAGES[name],
        tfjsName: tf.getBackend(),
        source,
        attempts,
      };
      return active;
    }
  }
  const tried = attempts.map((a) => `${a.backend}: ${a.reason}`).join("; ");
  throw new BackendError(`No TensorFlow.js backend could be started (${tried})`, { attempts });
}

/** The active backend, selecting one on first use. */
export async function ensureBackend(options: BackendOptions = {}): Promise<BackendInfo> {
  if (active && options.backend === undefined) return active;
  return selectBackend(options);
}

/** The backend chosen by the last `selectBackend`, if any. */
export function activeBackend(): BackendInfo | undefined {
  return active;
}

/** One line for logs and notebooks: "wasm (@tensorflow/tfjs-backend-wasm, auto)". */
export function describeBackend(info: BackendInfo): string {
  const skipped = info.attempts.filter((a) => !a.ok).map((a) => a.backend);
  const note = skipped.length > 0 ? `; unavailable: ${skipped.join(", ")}` : "";
  return `${info.name} (${info.package}, ${info.source}${note})`;
}
