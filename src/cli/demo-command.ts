import * as path from "node:path";
import { parseArgs } from "node:util";
import { describeBackend, selectBackend } from "../backend";
import { prepare } from "../data/prepare";
import type { Command } from "./main";

const USAGE = `Usage: esmkit demo [--out DIR]

Runs the workflow on the bundled DeepLoc-2.0 sample (data/deeploc-sample.csv):
prepare -> tokenized Parquet + stats. Output goes to DIR (default out/demo).
`;

const SAMPLE = path.join(__dirname, "..", "..", "..", "data", "deeploc-sample.csv");

export const demoCommand: Command = {
  summary: "run the workflow on the bundled DeepLoc sample",
  usage: USAGE,
  async run(argv) {
    const { values } = parseArgs({
      args: argv,
      strict: true,
      allowPositionals: false,
      options: { out: { type: "string" } },
    });
    const out = path.resolve(values.out ?? "out/demo");
    const say = (s: string) => process.stdout.write(`${s}\n`);
    const backend = await selectBackend();
    say(`esmkit demo: TensorFlow.js backend ${describeBackend(backend)}`);
    say(`1. prepare: ${SAMPLE}`);
    const { stats } = await prepare({
      input: SAMPLE,
      out: path.join(out, "data"),
      overwrite: true,
    });
    say(
      `   kept ${stats.rowsKept}/${stats.rowsRead} proteins with 100..512 residues; ` +
        `membrane ${stats.classCounts["1"]} (${((100 * stats.classCounts["1"]!) / stats.rowsKept).toFixed(1)} %)`,
    );
    say(
      `   train ${stats.splits.train.rows}, test ${stats.splits.test.rows}; balanced class weights ${stats.classWeights.map((w) => w.toFixed(3)).join(" / ")}`,
    );
    say(`   wrote ${path.join(out, "data")}/{train,test}.parquet and stats.json`);
    return 0;
  },
};
