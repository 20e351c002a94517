/** Shared fixtures for the AWS tests: a tiny model directory and small prepared data. */
import { spawn } from "node:child_process";
import { mkdtemp } from "node:fs/promises";
import { tmpdir } from "node:os";
import * as path from "node:path";
import { selectBackend } from "../../src/backend";
import { customEsmConfig } from "../../src/model/config";
import { Esm2Model } from "../../src/model/esm2";
import { savePretrained } from "../../src/model/pretrained";
import { REPO_ROOT } from "../helpers/python";

export const SAMPLE = path.join(REPO_ROOT, "data", "deeploc-sample.csv");
export const CLI = path.join(REPO_ROOT, "bin", "esmkit.js");

export const tmp = (prefix: string) => mkdtemp(path.join(tmpdir(), prefix));

/** A 2-layer, hidden-32 random ESM-2 classifier saved in Hugging Face layout. */
export async function tinyModelDir(): Promise<string> {
  await selectBackend({ backend: "wasm" });
  const dir = path.join(await tmp("esmkit-aws-model-"), "model");
  const model = Esm2Model.random(
    customEsmConfig({ hiddenSize: 32, numHiddenLayers: 2, numAttentionHeads: 4 }),
    { seed: 7 },
  );
  try {
    await savePretrained(model, dir);
  } finally {
    model.dispose();
  }
  return dir;
}

export interface CliRun {
  status: number | null;
  stdout: string;
  stderr: string;
}

/** Run `node bin/esmkit.js ...` asynchronously (moto's proxy lives in this process). */
export function runCli(
  args: string[],
  env: NodeJS.ProcessEnv,
  timeoutMs = 120_000,
): Promise<CliRun> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [CLI, ...args], {
      env,
      stdio: ["ignore", "pipe", "pipe"],
    });
    let stdout = "";
    let stderr = "";
    child.stdout.on("data", (d) => {
      stdout += d;
    });
    child.stderr.on("data", (d) => {
      stderr += d;
    });
    const timer = setTimeout(() => child.kill("SIGKILL"), timeoutMs);
    child.on("error", reject);
    child.on("close", (status) => {
      clearTimeout(timer);
      resolve({ status, stdout, stderr });
    });
  });
}
