// The export's web page: FASTA in, class probabilities out, computed in the browser by
// transformers.js from the model files beside this page (written by `esmkit export --web`).
// Sequences are cleaned as `esmkit predict` cleans them (whitespace dropped, upper case,
// one final `*` removed, residues checked, truncated to max_length - 2 residues), so the
// numbers match its output. Nothing is fetched from outside this folder.
import { env, pipeline } from "./vendor/transformers.min.js";

const RESIDUES = "LAGVSERTIDPKQNFYMHWCXBUZO.-";
const COLORS = ["#2f80ed", "#f2994a", "#27ae60", "#eb5757", "#9b51e0"];
const MORE_COLORS = ["#56ccf2", "#f2c94c", "#6fcf97", "#bb6bd9", "#828282"];
const BATCH = 4;

const here = new URL("./", import.meta.url);
env.allowLocalModels = true;
env.allowRemoteModels = false;
env.useBrowserCache = false;
env.localModelPath = here.pathname;
env.backends.onnx.wasm.wasmPaths = {
  mjs: new URL("vendor/ort-wasm-simd-threaded.asyncify.mjs", here).href,
  wasm: new URL("vendor/ort-wasm-simd-threaded.asyncify.wasm", here).href,
};
// The model id "." is not a Hub id, so transformers.js reads ./config.json, ./onnx/... as
// paths relative to this page.
const MODEL = ".";

const $ = (id) => document.getElementById(id);
const state = (s) => {
  document.body.dataset.state = s;
};
const status = (text, isError = false) => {
  $("status").textContent = text;
  $("status").className = isError ? "error" : "";
};

/** FASTA records, or one sequence per non-empty line when there is no ">" header. */
export function parseInput(text) {
  const lines = text.replace(/^\ufeff/, "").split(/\r\n|\r|\n/);
  const hasHeader = lines.some((l) => l.trimStart().startsWith(">"));
  const records = [];
  let current = null;
  lines.forEach((line, i) => {
    const t = line.trim();
    if (t === "") return;
    if (!hasHeader) {
      records.push({ id: `seq${records.length + 1}`, raw: t, line: i + 1 });
    } else if (t.startsWith(">")) {
      current = {
        id: t.slice(1).trim().split(/\s+/)[0] || `record${records.length + 1}`,
        raw: "",
        line: i + 1,
      };
      records.push(current);
    } else if (current) {
      current.raw += t;
    } else {
      records.push({
        id: `line${i + 1}`,
        error: `line ${i + 1}: sequence data before the first ">" header`,
      });
    }
  });
  return records;
}

/** As esmkit's normaliseSequence with the "truncate" policy. */
export function normalise(raw, maxLength) {
  let s = raw.replace(/\s+/g, "").toUpperCase();
  if (s.endsWith("*")) s = s.slice(0, -1);
  for (let i = 0; i < s.length; i++) {
    if (!RESIDUES.includes(s[i])) {
      return {
        error: `invalid character "${s[i]}" at position ${i + 1}; valid residues: ${RESIDUES}`,
      };
    }
  }
  if (s.length === 0) return { error: "empty sequence" };
  const limit = maxLength - 2;
  return { sequence: s.slice(0, limit), length: s.length, truncated: s.length > limit };
}

function cell(row, text, cls) {
  const td = document.createElement("td");
  td.textContent = text;
  if (cls) td.className = cls;
  row.appendChild(td);
}

function renderTable(labels, results) {
  const table = $("results");
  table.replaceChildren();
  const head = table.createTHead().insertRow();
  for (const h of ["id", "residues", "label", ...labels.map((l) => `P(${l})`)]) {
    const th = document.createElement("th");
    th.textContent = h;
    head.appendChild(th);
  }
  const body = table.createTBody();
  for (const r of results) {
    const row = body.insertRow();
    cell(row, r.id);
    if (r.error) {
      cell(row, "");
      cell(row, r.error, "err");
      row.lastChild.colSpan = labels.length + 1;
      continue;
    }
    cell(
      row,
      r.truncated ? `${r.length} (first ${r.sequenceLength} used)` : String(r.length),
      "num",
    );
    cell(row, r.label);
    for (const l of labels) cell(row, r.probabilities[l].toFixed(4), "num");
  }
  table.hidden = false;
}

function svg(name, attrs, text) {
  const el = document.createElementNS("http://www.w3.org/2000/svg", name);
  for (const [k, v] of Object.entries(attrs)) el.setAttribute(k, String(v));
  if (text !== undefined) el.textContent = text;
  return el;
}

/** One 100 % stacked bar per protein: the share of each class. */
function renderChart(labels, results) {
  const rows = results.filter((r) => !r.error);
  const chart = $("chart");
  chart.replaceChildren();
  const left = 150;
  const width = 900;
  const barH = 22;
  const top = 34;
  const plotW = width - left - 160;
  const height = top + rows.length * (barH + 8) + 30;
  chart.setAttribute("width", width);
  chart.setAttribute("height", height);
  chart.setAttribute("viewBox", `0 0 ${width} ${height}`);
  const color = (i) => COLORS.concat(MORE_COLORS)[i % 10];
  labels.forEach((l, i) => {
    const x = left + i * 140;
    chart.appendChild(svg("rect", { x, y: 8, width: 12, height: 12, fill: color(i) }));
    chart.appendChild(svg("text", { x: x + 17, y: 18, "font-size": 12 }, `P(${l})`));
  });
  rows.forEach((r, j) => {
    const y = top + j * (barH + 8);
    const name = r.id.length > 20 ? `${r.id.slice(0, 19)}…` : r.id;
    chart.appendChild(
      svg("text", { x: left - 8, y: y + 15, "font-size": 12, "text-anchor": "end" }, name),
    );
    let x = left;
    labels.forEach((l, i) => {
      const w = r.probabilities[l] * plotW;
      const rect = svg("rect", { x, y, width: Math.max(0, w), height: barH, fill: color(i) });
      rect.appendChild(svg("title", {}, `${r.id}: P(${l}) = ${r.probabilities[l].toFixed(4)}`));
      chart.appendChild(rect);
      x += w;
    });
    chart.appendChild(
      svg(
        "text",
        { x: left + plotW + 8, y: y + 15, "font-size": 12 },
        `${r.label} ${r.score.toFixed(3)}`,
      ),
    );
  });
  const axisY = top + rows.length * (barH + 8) + 12;
  for (const t of [0, 0.25, 0.5, 0.75, 1]) {
    const x = left + t * plotW;
    chart.appendChild(svg("line", { x1: x, x2: x, y1: top - 4, y2: axisY - 8, stroke: "#cbd2d9" }));
    chart.appendChild(
      svg("text", { x, y: axisY + 4, "font-size": 11, "text-anchor": "middle" }, t),
    );
  }
}

async function main() {
  state("loading");
  const manifest = await (await fetch(new URL("esmkit-export.json", here))).json();
  const labels = manifest.labels;
  const select = $("dtype");
  for (const d of manifest.dtypes) {
    const o = document.createElement("option");
    o.value = d;
    o.textContent = d === "q8" ? "int8 (q8)" : "float32";
    select.appendChild(o);
  }
  const wanted = new URLSearchParams(location.search).get("dtype");
  select.value = manifest.dtypes.includes(wanted) ? wanted : manifest.dtypes.at(-1);
  const classifiers = new Map();
  const classifier = async (dtype) => {
    if (!classifiers.has(dtype)) {
      classifiers.set(dtype, pipeline("text-classification", MODEL, { dtype, device: "wasm" }));
    }
    return classifiers.get(dtype);
  };
  const info = `${labels.length} classes (${labels.join(", ")}), up to ${manifest.maxLength - 2} residues per protein`;
  await classifier(select.value);
  $("model-info").textContent = `Model: ESM-2 sequence classifier, ${info}.`;
  $("run").disabled = false;
  status("Ready.");
  state("ready");

  const drop = $("drop");
  const readFile = async (file) => {
    $("fasta").value = await file.text();
    status(`Loaded ${file.name}.`);
  };
  drop.addEventListener("dragover", (e) => {
    e.preventDefault();
    drop.classList.add("over");
  });
  drop.addEventListener("dragleave", () => drop.classList.remove("over"));
  drop.addEventListener("drop", (e) => {
    e.preventDefault();
    drop.classList.remove("over");
    if (e.dataTransfer.files[0]) readFile(e.dataTransfer.files[0]);
  });
  $("file").addEventListener("change", (e) => {
    if (e.target.files[0]) readFile(e.target.files[0]);
  });

  $("run").addEventListener("click", async () => {
    $("run").disabled = true;
    state("running");
    try {
      const dtype = select.value;
      const records = parseInput($("fasta").value);
      if (records.length === 0) throw new Error("No sequences: paste FASTA or drop a file.");
      const results = records.map((r) => {
        if (r.error) return { id: r.id, error: r.error };
        const n = normalise(r.raw, manifest.maxLength);
        return n.error
          ? { id: r.id, error: n.error }
          : { id: r.id, ...n, sequenceLength: n.sequence.length };
      });
      const todo = results.filter((r) => !r.error);
      const run = await classifier(dtype);
      const started = performance.now();
      for (let i = 0; i < todo.length; i += BATCH) {
        status(`Classifying ${i + 1}-${Math.min(i + BATCH, todo.length)} of ${todo.length}…`);
        const batch = todo.slice(i, i + BATCH);
        const out = await run(
          batch.map((r) => r.sequence),
          { top_k: null },
        );
        batch.forEach((r, j) => {
          const scores = out[j];
          r.probabilities = Object.fromEntries(
            labels.map((l) => [l, scores.find((s) => s.label === l).score]),
          );
          r.label = scores[0].label;
          r.score = scores[0].score;
        });
      }
      const seconds = ((performance.now() - started) / 1000).toFixed(1);
      renderTable(labels, results);
      renderChart(labels, results);
      const failed = results.length - todo.length;
      status(
        `${todo.length} proteins classified in ${seconds} s (${dtype})${failed ? `; ${failed} not valid (see the table)` : ""}.`,
      );
      window.esmkitResults = { dtype, results };
      state("done");
    } catch (e) {
      status(String(e?.message ?? e), true);
      state("error");
    } finally {
      $("run").disabled = false;
    }
  });
}

main().catch((e) => {
  status(`Could not load the model: ${e?.message ?? e}`, true);
  state("error");
});
