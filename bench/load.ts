/**
 * Load test for a running `esmkit serve` (or any endpoint with the same contract):
 * N clients on keep-alive connections each send POST /invocations back to back for a
 * fixed time; reports requests/s, sequences/s, latency percentiles of the successful
 * answers and errors by status. Not part of the test suite.
 *
 *   npm run build
 *   node bin/esmkit.js serve --model DIR --port 8080 --quiet & SERVER=$!
 *   node build/bench/load.js --url http://127.0.0.1:8080 [--clients 32] [--duration 30]
 *        [--length 50-400[,MIN-MAX...]] [--runs 1] [--server-pid $SERVER]
 *        [--per-request 1] [--seed 1] [--out bench/results/load.json]
 *
 * Sequences are random strings of the 20 standard amino acids with lengths drawn
 * uniformly from --length (a number or a MIN-MAX range), reproducible with --seed.
 * `--runs K` makes K runs one after the other, run i drawing lengths from the i-th
 * range of --length (cycled) with seed + i. With `--server-pid` (Linux) it reads the
 * server's resident memory (VmRSS, and its peak VmHWM) from /proc before the first run
 * and after each one (once the server has been idle for --settle-ms), to show whether
 * memory keeps growing with new request shapes or levels off.
 */
import { mkdir, readFile, writeFile } from "node:fs/promises";
import { Agent, request } from "node:http";
import * as path from "node:path";
import { parseArgs } from "node:util";
import { SeededRandom } from "../src/util/random";

const AMINO = "ACDEFGHIKLMNPQRSTVWY";

interface Options {
  url: string;
  clients: number;
  durationS: number;
  /** One [min, max] residue range per run (cycled). */
  lengths: [number, number][];
  runs: number;
  perRequest: number;
  seed: number;
  timeoutMs: number;
  serverPid?: number;
  settleMs: number;
  out?: string;
}

function parseOptions(argv: string[]): Options {
  const { values: v } = parseArgs({
    args: argv,
    strict: true,
    options: {
      url: { type: "string", default: "http://127.0.0.1:8080" },
      clients: { type: "string", default: "32" },
      duration: { type: "string", default: "30" },
      length: { type: "string", default: "50-400" },
      runs: { type: "string", default: "1" },
      "per-request": { type: "string", default: "1" },
      seed: { type: "string", default: "1" },
      "timeout-ms": { type: "string", default: "60000" },
      "server-pid": { type: "string" },
      "settle-ms": { type: "string", default: "2000" },
      out: { type: "string" },
      help: { type: "boolean" },
    },
  });
  if (v.help) {
    process.stdout.write(
      "node build/bench/load.js [--url URL] [--clients 32] [--duration 30] [--length 50-400[,MIN-MAX...]]\n" +
        "                         [--runs 1] [--server-pid PID] [--settle-ms 2000]\n" +
        "                         [--per-request 1] [--seed 1] [--timeout-ms 60000] [--out FILE]\n",
    );
    process.exit(0);
  }
  const num = (name: string, s: string, min: number) => {
    const n = Number(s);
    if (s.trim() === "" || !Number.isFinite(n) || n < min)
      throw new Error(`--${name} expects a number >= ${min}, got "${s}"`);
    return n;
  };
  const lengths = v.length!.split(",").map((range): [number, number] => {
    const [lo, hi = lo] = range.split("-");
    const min = num("length", lo!, 1);
    return [min, num("length", hi!, min)];
  });
  return {
    url: v.url!.replace(/\/+$/, ""),
    clients: Math.floor(num("clients", v.clients!, 1)),
    durationS: num("duration", v.duration!, 0.1),
    lengths,
    runs: Math.floor(num("runs", v.runs!, 1)),
    perRequest: Math.floor(num("per-request", v["per-request"]!, 1)),
    seed: Math.floor(num("seed", v.seed!, 0)),
    timeoutMs: num("timeout-ms", v["timeout-ms"]!, 1),
    serverPid: v["server-pid"] === undefined ? undefined : num("server-pid", v["server-pid"], 1),
    settleMs: num("settle-ms", v["settle-ms"]!, 0),
    out: v.out,
  };
}

/** Resident and peak resident memory of a process in MiB, from /proc (Linux). */
async function memoryOf(pid: number): Promise<{ rssMiB: number; peakRssMiB: number }> {
  const status = await readFile(`/proc/${pid}/status`, "utf8").catch((e: Error) => {
    throw new Error(`cannot read the memory of process ${pid} (--server-pid): ${e.message}`);
  });
  const kib = (field: string) => {
    const m = new RegExp(`^${field}:\\s+(\\d+) kB`, "m").exec(status);
    if (!m) throw new Error(`/proc/${pid}/status has no ${field}`);
    return Math.round(Number(m[1]) / 102.4) / 10;
  };
  return { rssMiB: kib("VmRSS"), peakRssMiB: kib("VmHWM") };
}

interface Outcome {
  ms: number;
  status: number | string;
}

function post(agent: Agent, url: URL, body: string, timeoutMs: number): Promise<Outcome> {
  const t0 = process.hrtime.bigint();
  const elapsed = () => Number(process.hrtime.bigint() - t0) / 1e6;
  return new Promise((resolve) => {
    const req = request(
      {
        host: url.hostname,
        port: url.port,
        path: "/invocations",
        method: "POST",
        agent,
        headers: { "Content-Type": "application/json", "Content-Length": Buffer.byteLength(body) },
      },
      (res) => {
        res.resume();
        res.on("end", () => resolve({ ms: elapsed(), status: res.statusCode ?? 0 }));
        res.on("error", (e) =>
          resolve({ ms: elapsed(), status: (e as NodeJS.ErrnoException).code ?? "error" }),
        );
      },
    );
    req.setTimeout(timeoutMs, () =>
      req.destroy(Object.assign(new Error("timeout"), { code: "TIMEOUT" })),
    );
    req.on("error", (e) =>
      resolve({ ms: elapsed(), status: (e as NodeJS.ErrnoException).code ?? "error" }),
    );
    req.end(body);
  });
}

function percentile(sorted: number[], p: number): number {
  if (sorted.length === 0) return Number.NaN;
  return sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)]!;
}

interface RunSummary {
  seed: number;
  lengths: [number, number];
  seconds: number;
  requests: number;
  ok: number;
  errors: Record<string, number>;
  requestsPerSecond: number;
  sequencesPerSecond: number;
  latencyMs: { p50: number; p95: number; p99: number; max: number };
  /** The server's memory once idle after this run (with --server-pid). */
  server?: { rssMiB: number; peakRssMiB: number };
}

const round = (n: number) => Math.round(n * 10) / 10;

async function oneRun(
  o: Options,
  url: URL,
  seed: number,
  [lengthMin, lengthMax]: [number, number],
): Promise<RunSummary> {
  const agent = new Agent({ keepAlive: true, maxSockets: o.clients });
  const rng = new SeededRandom(seed);
  const sequence = () => {
    const n = lengthMin + Math.floor(rng.next() * (lengthMax - lengthMin + 1));
    let s = "";
    for (let i = 0; i < n; i++) s += AMINO[Math.floor(rng.next() * AMINO.length)];
    return s;
  };
  const body = () =>
    JSON.stringify({
      inputs: o.perRequest === 1 ? sequence() : Array.from({ length: o.perRequest }, sequence),
    });
  process.stderr.write(
    `load: ${o.clients} clients x ${o.durationS} s against ${o.url}, ${o.perRequest} sequence(s)/request of ${lengthMin}-${lengthMax} residues (seed ${seed})\n`,
  );
  const outcomes: Outcome[] = [];
  const started = Date.now();
  const end = started + o.durationS * 1000;
  const client = async () => {
    while (Date.now() < end) outcomes.push(await post(agent, url, body(), o.timeoutMs));
  };
  const ticker = setInterval(() => {
    const s = (Date.now() - started) / 1000;
    process.stderr.write(`  ${s.toFixed(0)} s: ${outcomes.length} requests\n`);
  }, 5000);
  await Promise.all(Array.from({ length: o.clients }, client));
  clearInterval(ticker);
  const seconds = (Date.now() - started) / 1000;
  agent.destroy();

  const ok = outcomes.filter((x) => x.status === 200).map((x) => x.ms);
  ok.sort((a, b) => a - b);
  const errors: Record<string, number> = {};
  for (const x of outcomes) if (x.status !== 200) errors[x.status] = (errors[x.status] ?? 0) + 1;
  return {
    seed,
    lengths: [lengthMin, lengthMax],
    seconds: round(seconds),
    requests: outcomes.length,
    ok: ok.length,
    errors,
    requestsPerSecond: round(outcomes.length / seconds),
    sequencesPerSecond: round((ok.length * o.perRequest) / seconds),
    latencyMs: {
      p50: round(percentile(ok, 50)),
      p95: round(percentile(ok, 95)),
      p99: round(percentile(ok, 99)),
      max: round(ok[ok.length - 1] ?? Number.NaN),
    },
  };
}

async function main(): Promise<void> {
  const o = parseOptions(process.argv.slice(2));
  const url = new URL(o.url);
  const ping = await new Promise<number | string>((resolve) => {
    const req = request(`${o.url}/ping`, (res) => {
      res.resume();
      resolve(res.statusCode ?? 0);
    });
    req.on("error", (e) => resolve((e as NodeJS.ErrnoException).code ?? String(e)));
    req.end();
  });
  if (ping !== 200) throw new Error(`GET ${o.url}/ping answered ${ping}; is the server up?`);

  const settled = async () => {
    if (o.serverPid === undefined) return undefined;
    await new Promise((r) => setTimeout(r, o.settleMs));
    return memoryOf(o.serverPid);
  };
  const idle = await settled();
  if (idle) process.stderr.write(`server idle: RSS ${idle.rssMiB} MiB\n`);
  const runs: RunSummary[] = [];
  for (let i = 0; i < o.runs; i++) {
    const run = await oneRun(o, url, o.seed + i, o.lengths[i % o.lengths.length]!);
    run.server = await settled();
    runs.push(run);
    process.stdout.write(
      `run ${i + 1}/${o.runs} (${run.lengths.join("-")} residues): requests ${run.requests} (${run.ok} ok) in ${run.seconds} s: ${run.requestsPerSecond} req/s, ${run.sequencesPerSecond} seq/s\n` +
        `  latency ms p50 ${run.latencyMs.p50}  p95 ${run.latencyMs.p95}  p99 ${run.latencyMs.p99}  max ${run.latencyMs.max}\n` +
        `  errors ${Object.keys(run.errors).length ? JSON.stringify(run.errors) : "none"}` +
        `${run.server ? `; server RSS ${run.server.rssMiB} MiB (peak ${run.server.peakRssMiB} MiB)` : ""}\n`,
    );
  }
  const summary = {
    url: o.url,
    clients: o.clients,
    durationS: o.durationS,
    sequencesPerRequest: o.perRequest,
    serverIdle: idle,
    runs,
  };
  if (o.out) {
    await mkdir(path.dirname(o.out), { recursive: true });
    await writeFile(o.out, `${JSON.stringify(summary, null, 2)}\n`);
  }
}

main().catch((e) => {
  process.stderr.write(`load: ${(e as Error).message}\n`);
  process.exitCode = 1;
});
