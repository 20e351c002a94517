/**
 * `esmkit <command>`: the command-line face of the library. Each command parses its
 * flags strictly from its declared table (src/cli/command.ts) and this maps library
 * errors to exit codes: 2 for bad usage or input, 1 for anything unexpected.
 */
import { isEsmKitError } from "../errors";
import { registerDefaults } from "../register-defaults";
import { defineGroup } from "./command";
import { demoCommand } from "./demo-command";
import { embedCommand } from "./embed-command";
import { evaluateCommand } from "./evaluate-command";
import { exportCommand } from "./export-command";
import { kernelCommand } from "./kernel-command";
import { predictCommand } from "./predict-command";
import { prepareCommand } from "./prepare-command";
import { sagemakerCommand } from "./sagemaker-command";
import { serveCommand } from "./serve-command";
import { trainCommand } from "./train-command";

// The s3:// store and the ESM-2 predictor loader (src/register-defaults.ts).
registerDefaults();

export const esmkit = defineGroup({
  name: "",
  summary: "fine-tune ESM-2 and serve it",
  commands: [
    prepareCommand,
    trainCommand,
    evaluateCommand,
    demoCommand,
    kernelCommand,
    predictCommand,
    embedCommand,
    serveCommand,
    exportCommand,
    sagemakerCommand,
  ],
});

export async function main(argv: string[]): Promise<number> {
  if (argv[0] === "--version") {
    process.stdout.write(`${require("../../../package.json").version}\n`);
    return 0;
  }
  const where = esmkit.commands.has(argv[0] ?? "") ? `esmkit ${argv[0]}` : "esmkit";
  try {
    return await esmkit.run(argv);
  } catch (e) {
    if (isEsmKitError(e) || (e as NodeJS.ErrnoException).code?.startsWith("ERR_PARSE_ARGS")) {
      process.stderr.write(`${where}: ${(e as Error).message}\n`);
      return 2;
    }
    process.stderr.write(`${where}: unexpected error: ${(e as Error).stack ?? e}\n`);
    return 1;
  }
}
