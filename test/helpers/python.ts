/**
 * Locates the Python reference stack (torch, transformers, peft, pandas) that
 * `.ci/run` installs into `.venv` from `test/reference/requirements.txt`.
 * Tests that compare against Python call `referencePython()`: under CI a missing
 * stack is a failure; on a developer machine the test is skipped with the reason.
 */
import { spawnSync } from "node:child_process";
import { existsSync } from "node:fs";
import * as path from "node:path";

export const REPO_ROOT = path.resolve(__dirname, "..", "..", "..");

let cached: { python?: string; reason?: string } | undefined;

function probe(): { python?: string; reason?: string } {
  const candidates = [process.env.ESMKIT_PYTHON, path.join(REPO_ROOT, ".venv", "bin", "python")];
  for (const c of candidates) {
    if (!c || !existsSync(c)) continue;
    const r = spawnSync(c, ["-c", "import torch, transformers, peft, pandas, pyarrow"], {
      encoding: "utf8",
    });
    if (r.status === 0) return { python: c };
    return { reason: `${c} lacks the reference packages: ${r.stderr.trim().split("\n").pop()}` };
  }
  return { reason: "no .venv/bin/python and no ESMKIT_PYTHON (run .ci/run or see README)" };
}

/**
 * The reference interpreter, or `undefined` (with `t.skip` semantics left to the
 * caller) when absent outside CI. Throws under CI so a broken setup cannot pass green.
 */
export function referencePython(): string | undefined {
  cached ??= probe();
  if (cached.python) return cached.python;
  if (process.env.CI) throw new Error(`Python reference stack required under CI: ${cached.reason}`);
  return undefined;
}

export function pythonSkipReason(): string {
  cached ??= probe();
  return cached.reason ?? "";
}

/** Run a Python script from test/reference with arguments; throws with stderr on failure. */
export function runPython(
  python: string,
  script: string,
  args: string[],
  timeoutMs = 600_000,
): string {
  const r = spawnSync(python, [path.join(REPO_ROOT, "test", "reference", script), ...args], {
    encoding: "utf8",
    timeout: timeoutMs,
    maxBuffer: 64 * 1024 * 1024,
  });
  if (r.status !== 0) {
    throw new Error(`${script} ${args.join(" ")} failed (${r.status}):\n${r.stderr}`);
  }
  return r.stdout;
}
