/**
 * `esmkit <command>`: the command-line face of the library. Each command parses its
 * flags strictly (unknown flags are errors) and maps library errors to exit codes:
 * 2 for bad usage or input, 1 for anything unexpected.
 */
import { isEsmKitError } from "../errors";
import { demoCommand } from "./demo-command";
import { evaluateCommand } from "./evaluate-command";
import { exportCommand } from "./export-command";
import { kernelCommand } from "./kernel-command";
import { predictCommand } from "./predict-command";
import { prepareCommand } from "./prepare-command";
import { sagemakerCommand } from "./sagemaker-command";
import { serveCommand } from "./serve-command";
import { trainCommand } from "./train-command";

export interface Command {
  summary: string;
  usage: string;
  run(argv: string[]): Promise<number>;
}

const COMMANDS: Record<string, Command> = {
  prepare: prepareCommand,
  train: trainCommand,
  evaluate: evaluateCommand,
  demo: demoCommand,
  kernel: kernelCommand,
  predict: predictCommand,
  serve: serveCommand,
  export: exportCommand,
  sagemaker: sagemakerCommand,
};

function help(): string {
  const lines = Object.entries(COMMANDS).map(([name, c]) => `  ${name.padEnd(10)} ${c.summary}`);
  return `Usage: esmkit <command> [options]\n\nCommands:\n${lines.join("\n")}\n\nRun "esmkit <command> --help" for the options of a command.\n`;
}

export async function main(argv: string[]): Promise<number> {
  const [name, ...rest] = argv;
  if (!name || name === "--help" || name === "-h" || name === "help") {
    process.stdout.write(help());
    return name ? 0 : 2;
  }
  if (name === "--version") {
    process.stdout.write(`${require("../../../package.json").version}\n`);
    return 0;
  }
  const command = COMMANDS[name];
  if (!command) {
    process.stderr.write(
      `esmkit: unknown command "${name}"; expected one of: ${Object.keys(COMMANDS).join(", ")}\n`,
    );
    return 2;
  }
  if ((rest.includes("--help") || rest.includes("-h")) && name !== "sagemaker") {
    process.stdout.write(command.usage);
    return 0;
  }
  try {
    return await command.run(rest);
  } catch (e) {
    if (isEsmKitError(e) || (e as NodeJS.ErrnoException).code?.startsWith("ERR_PARSE_ARGS")) {
      process.stderr.write(`esmkit ${name}: ${(e as Error).message}\n`);
      return 2;
    }
    process.stderr.write(`esmkit ${name}: unexpected error: ${(e as Error).stack ?? e}\n`);
    return 1;
  }
}

/** Parse a numeric flag, failing with the flag name and the bad value. */
export function numberFlag(
  name: string,
  value: string | undefined,
  kind: "int" | "float" = "int",
): number | undefined {
  if (value === undefined) return undefined;
  const n = Number(value);
  if (value.trim() === "" || !Number.isFinite(n) || (kind === "int" && !Number.isInteger(n))) {
    const err = new Error(
      `--${name} expects ${kind === "int" ? "an integer" : "a number"}, got "${value}"`,
    );
    (err as NodeJS.ErrnoException).code = "ERR_PARSE_ARGS_INVALID_OPTION_VALUE";
    throw err;
  }
  return n;
}
