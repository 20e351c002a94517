/**
 * Fetch a Hub checkpoint into the cache from another thread or process, for the
 * download-race tests: `node build/test/model/hub-child.js REPO_ID` (HF_* from the
 * environment), or as a Worker with `workerData: { id }`. Prints / posts the files.
 */
import { isMainThread, parentPort, workerData } from "node:worker_threads";
import { resolveCheckpoint } from "../../src/model/pretrained";

const id = isMainThread ? process.argv[2]! : (workerData as { id: string }).id;
resolveCheckpoint(id, { onProgress: false }).then(
  (files) => {
    const out = JSON.stringify({ ok: true, config: files.config, weights: files.weights });
    if (parentPort) parentPort.postMessage(out);
    else process.stdout.write(`${out}\n`);
  },
  (e: Error) => {
    const out = JSON.stringify({ ok: false, error: `${e.name}: ${e.message}` });
    if (parentPort) parentPort.postMessage(out);
    else {
      process.stdout.write(`${out}\n`);
      process.exitCode = 1;
    }
  },
);
