/**
 * Is this checkout slower than another checkout on the bench's fp32 rows? A row measured on
 * an earlier day cannot answer that: the machine's speed drifts between days by more than
 * the changes being judged. So run both builds' `bench/esmkit-side.js` on the same random
 * checkpoints and token ids, each run in a fresh process, taking turns (A B, then B A, ...),
 * and report each build's median over the rounds and the ratio (time: lower is better).
 *
 *   node build/bench/versus-build.js --other DIR [--name-other LABEL] [--threads 1,2]
 *        [--cases memory-8m,train-8m,train-35m,infer-8m,infer-35m] [--rounds 3] [--json F]
 *        [--md F]
 *
 * The cases are the rows of `bench/run.ts` at their sizes: memory-8m (one LoRA step 8 x 512,
 * with and without gradient checkpointing; median of 3 steps after the first), train-8m and
 * train-35m (LoRA step 8 x 256, plain; median of 3 after a warm-up step), infer-8m and
 * infer-35m (forward at 1 x 400 and 16 x 400; median of 5 after a warm-up batch).
 * `--other` is the root of another esmkit checkout, built (`npm run build`), whose
 * `bench/esmkit-side.ts` takes the same `setup`, `memory`, `train` and `infer` parameters
 * (every commit since 2026-11-26 does). For example, against the code of the day the
 * issue-13 rows were measured: `git worktree add --detach ../old 85ec831`, link
 * node_modules, build there.
 */
import { spawnSync } from "node:child_process";
import { existsSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { parseArgs } from "node:util";
import { SeededRandom } from "../src/util/random";
import { median } from "./median";

const ROOT = path.resolve(__dirname, "..", "..");

interface Side {
  name: string;
  root: string;
}

/** One `esmkit-side.js` run of `side`; its last `@@BENCH` answer. */
function sideRun(side: Side, kind: string, params: object): Record<string, unknown> {
  const script = path.join(side.root, "build", "bench", "esmkit-side.js");
  const r = spawnSync(process.execPath, [script, kind, JSON.stringify(params)], {
    cwd: side.root,
    encoding: "utf8",
    timeout: 900_000,
    maxBuffer: 64 * 2 ** 20,
  });
  const line = r.stdout
    ?.split("\n")
    .filter((l) => l.startsWith("@@BENCH "))
    .at(-1);
  if (!line) {
    const why = r.error?.message ?? `exit ${r.status ?? r.signal}`;
    throw new Error(`${side.name} ${kind}: ${why}\n${(r.stderr ?? "").slice(-2000)}`);
  }
  const answer = JSON.parse(line.slice("@@BENCH ".length)) as Record<string, unknown>;
  if (answer.error) throw new Error(`${side.name} ${kind}: ${String(answer.error)}`);
  return answer;
}

function list(flag: string, value: string, accepted?: string[]): string[] {
  const items = value.split(",").filter(Boolean);
  for (const x of items)
    if (accepted && !accepted.includes(x))
      throw new Error(`${flag}: unknown ${JSON.stringify(x)}; accepted: ${accepted.join(", ")}`);
  return items;
}

const ARCH = { "8m": "esm2_t6_8M_UR50D", "35m": "esm2_t12_35M_UR50D" } as const;

/** One measured configuration: what the side runs and which answer field is its time. */
interface Config {
  label: string;
  kind: "memory" | "train" | "infer";
  arch: keyof typeof ARCH;
  batch: number;
  length: number;
  params: Record<string, unknown>;
  /** Seconds per step or batch from the side's answer. */
  seconds: (answer: Record<string, unknown>) => number;
}

const stepTime = (a: Record<string, unknown>) => Number(a.medianStepSeconds);
const batchTime = (a: Record<string, unknown>) => Number(a.latencyMs) / 1000;

const CASES: Record<string, Config[]> = {
  "memory-8m": [true, false].map((checkpointing) => ({
    label: `memory-8m step 8x512 ${checkpointing ? "checkpointing" : "plain"}`,
    kind: "memory",
    arch: "8m",
    batch: 8,
    length: 512,
    params: { warmup: 0, repeats: 3, checkpointing },
    seconds: stepTime,
  })),
  ...Object.fromEntries(
    (["8m", "35m"] as const).map((arch) => [
      `train-${arch}`,
      [
        {
          label: `train-${arch} LoRA step 8x256`,
          kind: "train",
          arch,
          batch: 8,
          length: 256,
          params: { warmup: 1, repeats: 3, microBatch: 8, checkpointing: false },
          seconds: stepTime,
        },
      ],
    ]),
  ),
  ...Object.fromEntries(
    (["8m", "35m"] as const).map((arch) => [
      `infer-${arch}`,
      [1, 16].map((batch) => ({
        label: `infer-${arch} forward ${batch}x400`,
        kind: "infer",
        arch,
        batch,
        length: 400,
        params: { warmup: 1, repeats: 5 },
        seconds: batchTime,
      })),
    ]),
  ),
};

async function main(): Promise<void> {
  const { values: v } = parseArgs({
    options: {
      other: { type: "string" },
      "name-other": { type: "string" },
      threads: { type: "string", default: "1,2" },
      cases: { type: "string", default: Object.keys(CASES).join(",") },
      rounds: { type: "string", default: "3" },
      json: { type: "string" },
      md: { type: "string" },
    },
  });
  if (!v.other) throw new Error("--other DIR: the root of another built esmkit checkout");
  const other: Side = { name: v["name-other"] ?? path.basename(v.other), root: v.other };
  if (!existsSync(path.join(other.root, "build", "bench", "esmkit-side.js")))
    throw new Error(
      `--other ${other.root}: no build/bench/esmkit-side.js (run npm run build there)`,
    );
  const here: Side = { name: "this build", root: ROOT };
  const threads = list("--threads", v.threads!).map(Number);
  const cases = list("--cases", v.cases!, Object.keys(CASES));
  const rounds = Number(v.rounds);
  for (const [flag, xs] of [
    ["--threads", threads],
    ["--rounds", [rounds]],
  ] as const)
    for (const n of xs)
      if (!Number.isInteger(n) || n < 1)
        throw new Error(`${flag}: ${n} is not accepted; a whole number >= 1`);

  const work = mkdtempSync(path.join(os.tmpdir(), "esmkit-versus-"));
  try {
    const models = new Map<string, { modelDir: string; adapterDir: string }>();
    const model = (arch: keyof typeof ARCH) => {
      let m = models.get(arch);
      if (!m) {
        m = {
          modelDir: path.join(work, arch, "model"),
          adapterDir: path.join(work, arch, "adapter"),
        };
        sideRun(here, "setup", { arch: ARCH[arch], seed: 1, ...m });
        models.set(arch, m);
      }
      return m;
    };
    const ids = (batch: number, length: number) => {
      const file = path.join(work, `ids-${batch}x${length}.json`);
      if (existsSync(file)) return file;
      const rng = new SeededRandom(1000 + batch * 7919 + length);
      const inputIds = Array.from({ length: batch }, () => [
        0,
        ...Array.from({ length: length - 2 }, () => 4 + rng.int(20)),
        2,
      ]);
      const labels = Array.from({ length: batch }, (_, i) => i % 2);
      writeFileSync(file, JSON.stringify({ batch, length, inputIds, labels }));
      return file;
    };
    const rows: {
      label: string;
      threads: number;
      here: number[];
      other: number[];
      hereMedian: number;
      otherMedian: number;
      ratio: number;
    }[] = [];
    for (const name of cases) {
      for (const c of CASES[name]!) {
        for (const t of threads) {
          const params = {
            backend: "wasm",
            engine: "onnx",
            threads: t,
            ...model(c.arch),
            ids: ids(c.batch, c.length),
            ...c.params,
          };
          const times = new Map<Side, number[]>([
            [here, []],
            [other, []],
          ]);
          for (let r = 0; r < rounds; r++) {
            for (const side of r % 2 ? [other, here] : [here, other]) {
              const s = c.seconds(sideRun(side, c.kind, params));
              if (!Number.isFinite(s))
                throw new Error(`${side.name} ${c.label}: no time in the answer`);
              times.get(side)!.push(s);
              console.error(
                `${c.label}, ${t} thr, round ${r + 1}/${rounds}: ${side.name} ${s.toFixed(3)} s`,
              );
            }
          }
          const [a, b] = [times.get(here)!, times.get(other)!];
          rows.push({
            label: c.label,
            threads: t,
            here: a,
            other: b,
            hereMedian: median(a),
            otherMedian: median(b),
            ratio: median(a) / median(b),
          });
        }
      }
    }
    const header = `fp32 bench rows, onnx engine, random weights (seed 1), identical token ids; each value the median time (s per step or per batch) of one fresh process; median of ${rounds} rounds taking turns; ${os.cpus()[0]?.model ?? "cpu"}, ${os.cpus().length} cores, ${new Date().toISOString().slice(0, 10)}`;
    const md = [
      header,
      "",
      `| row | threads | this build (s) | ${other.name} (s) | this / ${other.name} (time) |`,
      "|---|---|---|---|---|",
      ...rows.map(
        (r) =>
          `| ${r.label} | ${r.threads} | ${r.hereMedian.toFixed(3)} | ${r.otherMedian.toFixed(3)} | ${r.ratio.toFixed(3)} |`,
      ),
      "",
    ].join("\n");
    console.log(md);
    if (v.md) writeFileSync(v.md, md);
    if (v.json)
      writeFileSync(v.json, `${JSON.stringify({ header, other: other.name, rows }, null, 1)}\n`);
  } finally {
    rmSync(work, { recursive: true, force: true });
  }
}

main().catch((e: unknown) => {
  console.error(e instanceof Error ? e.message : e);
  process.exit(1);
});
