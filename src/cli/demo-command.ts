import { readFileSync } from "node:fs";
import * as path from "node:path";
import { describeBackend, selectBackend } from "../backend";
import { prepare } from "../data/prepare";
import { parseFasta } from "../serve/fasta";
import { loadEsmPredictor } from "../serve/model-predictor";
import { createServer } from "../serve/server";
import { isBinaryMetrics } from "../train/evaluate";
import { DEFAULT_BASE_MODEL } from "../train/flags";
import { fineTune } from "../train/run";
import { flag } from "../util/flags";
import { progressLine } from "../util/progress";
import { defineCommand } from "./command";

const ROOT = path.join(__dirname, "..", "..", "..");
const SAMPLE = path.join(ROOT, "data", "deeploc-sample.csv");
const KNOWN = path.join(ROOT, "data", "known-proteins.fasta");

export const demoCommand = defineCommand({
  name: "demo",
  summary: "run the whole workflow on the bundled DeepLoc sample",
  description: `
The whole workflow on the bundled DeepLoc-2.0 sample: prepare -> fine-tune ESM-2
(8M architecture, LoRA + gradient accumulation + gradient checkpointing, class-weighted
loss) -> evaluate -> predict six known proteins. Uses ${DEFAULT_BASE_MODEL} when
the Hugging Face Hub is reachable (or cached), else random weights, and says so.`,
  flags: {
    out: flag.string("output directory", { value: "DIR", default: "out/demo" }),
    model: flag.string("base model", { value: "ID|DIR", default: DEFAULT_BASE_MODEL }),
    "train-examples": flag.int("training proteins used", { min: 1, default: 384 }),
    "eval-examples": flag.int("test proteins evaluated", { min: 1, default: 192 }),
    "max-length": flag.int("tokens per protein (<cls>/<eos> included)", {
      min: 3,
      default: 192,
    }),
    epochs: flag.int("epochs", { min: 1, default: 1 }),
    "learning-rate": flag.float("peak learning rate", {
      min: 0,
      minExclusive: true,
      default: 5e-4,
    }),
  },
  async run(v) {
    const out = path.resolve(v.out);
    const say = (s: string) => process.stdout.write(`${s}\n`);
    const started = Date.now();
    const backend = await selectBackend();
    say(`esmkit demo — TensorFlow.js backend: ${describeBackend(backend)}`);

    say(`\n1. Prepare ${path.relative(process.cwd(), SAMPLE)} (DeepLoc-2.0 sample)`);
    const { stats } = await prepare({
      input: SAMPLE,
      out: path.join(out, "data"),
      overwrite: true,
    });
    const pos = stats.classCounts["1"]!;
    say(
      `   kept ${stats.rowsKept}/${stats.rowsRead} proteins of 100..512 residues; membrane ${pos} (${((100 * pos) / stats.rowsKept).toFixed(1)} %); ` +
        `train ${stats.splits.train.rows}, test ${stats.splits.test.rows}; balanced class weights ${(stats.classWeights ?? []).map((w) => w.toFixed(3)).join(" / ") || "n/a"}`,
    );

    const { model, "train-examples": trainN, "eval-examples": evalN } = v;
    say(
      `\n2. Fine-tune ${model} with LoRA (r 8, alpha 16, query/key/value), accumulation 2, checkpointing`,
    );
    const bar = progressLine("   training", { stream: process.stdout });
    let randomWeights = false;
    const result = await fineTune({
      data: path.join(out, "data"),
      out: path.join(out, "run"),
      overwrite: true, // each demo run starts afresh, as its prepare step does
      model,
      randomIfUnavailable: true,
      lora: { rank: 8, alpha: 16, dropout: 0.05, targetModules: ["query", "key", "value"] },
      learningRate: v["learning-rate"],
      batchSize: 8,
      epochs: v.epochs,
      gradientAccumulationSteps: 2,
      gradientCheckpointing: true,
      warmupRatio: 0.1,
      maxLength: v["max-length"],
      limitTrain: trainN,
      limitEval: evalN,
      onMessage: (m) => {
        if (m.includes("RANDOM WEIGHTS")) randomWeights = true;
        say(m.startsWith("*") ? m : `   ${m}`);
      },
      onEvent: (e) => {
        if (e.type === "step") {
          bar.update(
            e.step,
            e.totalSteps,
            `loss ${e.loss.toFixed(4)} ${Math.round(e.tokensPerSecond)} tok/s`,
          );
        }
        if (e.type === "end") bar.finish(`${e.step} optimizer steps`);
      },
    });

    const m = result.metrics!;
    if (!isBinaryMetrics(m)) throw new Error("the demo trains the binary task");
    const majority =
      Math.max(
        m.confusionMatrix[0]![0]! + m.confusionMatrix[0]![1]!,
        m.confusionMatrix[1]![0]! + m.confusionMatrix[1]![1]!,
      ) / m.count;
    say(`\n3. Evaluate on ${m.count} test proteins`);
    say(
      `   accuracy ${m.accuracy.toFixed(3)} (majority-class baseline ${majority.toFixed(3)}), F1 ${m.f1.toFixed(3)}, MCC ${m.mcc.toFixed(3)}, ROC-AUC ${m.rocAuc === null || Number.isNaN(m.rocAuc) ? "n/a" : m.rocAuc.toFixed(3)}`,
    );
    say(`   confusion matrix [[tn, fp], [fn, tp]] = ${JSON.stringify(m.confusionMatrix)}`);

    say(
      "\n4. Serve the merged model (SageMaker contract, 127.0.0.1) and ask it about six known proteins",
    );
    const predictor = await loadEsmPredictor(path.join(out, "run", "model"), {
      onWarning: () => undefined,
    });
    const server = createServer({ predictor, log: false });
    try {
      const { port } = await server.listen(0, "127.0.0.1");
      const url = `http://127.0.0.1:${port}`;
      const ping = await fetch(`${url}/ping`);
      say(`   GET ${url}/ping -> ${ping.status}`);
      const fasta = readFileSync(KNOWN, "utf8");
      const records = parseFasta(fasta, { source: KNOWN });
      const res = await fetch(`${url}/invocations`, {
        method: "POST",
        headers: { "content-type": "text/x-fasta" },
        body: fasta,
      });
      const answers = (await res.json()) as { id: string; probabilities: Record<string, number> }[];
      say(`   POST ${url}/invocations (FASTA, ${records.length} proteins) -> ${res.status}`);
      const positive = predictor.labels[1]!;
      answers.forEach((a, i) => {
        const r = records[i]!;
        const expected = /expected=([\w-]+)/.exec(r.description)?.[1] ?? "?";
        const name = r.description.split("|")[0]!.trim().slice(0, 44);
        const p = a.probabilities[positive]!;
        say(
          `   ${a.id.padEnd(7)} ${name.padEnd(45)} expected ${expected.padEnd(12)} P(membrane) ${p.toFixed(3)}`,
        );
      });
    } finally {
      await server.close();
      predictor.dispose();
    }
    say(
      `\nOutputs in ${out}: data/ (Parquet + stats.json), run/model (Hugging Face), run/adapter (PEFT), run/metrics.json`,
    );
    if (randomWeights || result.randomWeights) {
      say(
        "NOTE: this run used RANDOM base weights (no Hub access): the numbers above only show that the pipeline works.",
      );
    }
    say(`demo finished in ${((Date.now() - started) / 1000).toFixed(0)} s`);
    return 0;
  },
});
