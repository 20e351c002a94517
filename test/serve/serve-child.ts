/**
 * `esmkit serve` with the fake predictor, for tests that need a real process (signals,
 * exit codes, environment): node build/test/serve/serve-child.js [serve flags].
 * FAKE_DELAY_MS slows every predictor call.
 */
import { serveCommand } from "../../src/cli/serve-command";
import { setPredictorLoader } from "../../src/serve/predictor";
import { FakePredictor } from "./fake-predictor";

setPredictorLoader(
  async () => new FakePredictor({ delayMs: Number(process.env.FAKE_DELAY_MS ?? 0) }),
);
serveCommand.run(process.argv.slice(2)).then(
  (code) => {
    process.exitCode = code;
  },
  (e) => {
    process.stderr.write(`serve-child: ${(e as Error).stack ?? e}\n`);
    process.exitCode = 2;
  },
);
