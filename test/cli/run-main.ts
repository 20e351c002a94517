/** `esmkit ...` in this process (bin/esmkit.js's main), with stdout and stderr captured. */
import { main } from "../../src/cli/main";

export interface MainRun {
  code: number;
  stdout: string;
  stderr: string;
}

export async function runMain(argv: string[]): Promise<MainRun> {
  const out: string[] = [];
  const err: string[] = [];
  const { stdout, stderr } = process;
  const writeOut = stdout.write;
  const writeErr = stderr.write;
  stdout.write = ((chunk: string | Uint8Array) => out.push(String(chunk)) > 0) as typeof writeOut;
  stderr.write = ((chunk: string | Uint8Array) => err.push(String(chunk)) > 0) as typeof writeErr;
  try {
    const code = await main(argv);
    return { code, stdout: out.join(""), stderr: err.join("") };
  } finally {
    stdout.write = writeOut;
    stderr.write = writeErr;
  }
}
