/**
 * `esmkit ...` for the AWS tests: bin/esmkit.js's main, except that until
 * src/cli/main.ts registers the `sagemaker` command, `sagemaker ...` runs that command
 * directly with main's error handling (message on stderr, exit 2 for esmkit errors).
 */
import { readFileSync } from "node:fs";
import { main } from "../../src/cli/main";
import { sagemakerCommand } from "../../src/cli/sagemaker-command";
import { isEsmKitError } from "../../src/errors";

const argv = process.argv.slice(2);
const registered = readFileSync(require.resolve("../../src/cli/main"), "utf8").includes(
  "sagemaker-command",
);

async function run(): Promise<number> {
  if (registered || argv[0] !== "sagemaker") return main(argv);
  const rest = argv.slice(1);
  if (rest.includes("--help") || rest.includes("-h")) {
    process.stdout.write(sagemakerCommand.usage);
    return 0;
  }
  try {
    return await sagemakerCommand.run(rest);
  } catch (e) {
    if (isEsmKitError(e) || (e as NodeJS.ErrnoException).code?.startsWith("ERR_PARSE_ARGS")) {
      process.stderr.write(`esmkit sagemaker: ${(e as Error).message}\n`);
      return 2;
    }
    process.stderr.write(`esmkit sagemaker: unexpected error: ${(e as Error).stack ?? e}\n`);
    return 1;
  }
}

run().then((code) => {
  process.exitCode = code;
});
