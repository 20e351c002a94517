/**
 * `esmkit serve` with the fake predictor, for tests that need a real process (signals,
 * exit codes, environment): node build/test/serve/serve-child.js [serve flags].
 * FAKE_DELAY_MS slows every predictor call. The fake holds a timer until disposed, as
 * the real model's worker threads do, so a server that forgets to dispose it never
 * exits; "serve-child: model loaded" on stderr marks the load.
 */
import { serveCommand } from "../../src/cli/serve-command";
import { setPredictorLoader } from "../../src/serve/predictor";
import { FakePredictor } from "./fake-predictor";

setPredictorLoader(async () => {
  process.stderr.write("serve-child: model loaded\n");
  const fake = new FakePredictor({ delayMs: Number(process.env.FAKE_DELAY_MS ?? 0) });
  const alive = setInterval(() => undefined, 60_000);
  return Object.assign(fake, { dispose: () => clearInterval(alive) });
});
serveCommand.run(process.argv.slice(2)).then(
  (code) => {
    process.exitCode = code;
  },
  (e) => {
    process.stderr.write(`serve-child: ${(e as Error).stack ?? e}\n`);
    process.exitCode = 2;
  },
);
