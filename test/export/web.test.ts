/**
 * The exported web page in headless Chromium (Playwright driving Debian's `chromium`),
 * served by `esmkit export --serve` in a child process: the six known proteins pasted
 * as FASTA give `esmkit predict`'s probabilities within 1e-4 (float32) and close to them
 * with the int8 file (whose ops onnxruntime-web must support); a dropped file fills the
 * text box; every request stays on the local server (no CDN). A screenshot goes to
 * out/screenshots/export-page.png (ignored by git).
 *
 * Needs Chromium (`chromium`, or `$CHROMIUM`): skipped without it on a developer
 * machine, a failure under CI.
 */
import assert from "node:assert/strict";
import { type ChildProcess, spawn, spawnSync } from "node:child_process";
import { once } from "node:events";
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import * as path from "node:path";
import { after, test } from "node:test";
import { REPO_ROOT } from "../helpers/python";
import { MODEL_FIX, maxProbDiff, TOLERANCE } from "./helpers";

const BIN = path.join(REPO_ROOT, "bin", "esmkit.js");
const FASTA = path.join(REPO_ROOT, "data", "known-proteins.fasta");
const SCREENSHOTS = path.join(REPO_ROOT, "out", "screenshots");
const tmp = mkdtempSync(path.join(tmpdir(), "esmkit-web-"));
let child: ChildProcess | undefined;
after(() => {
  child?.kill("SIGKILL");
  rmSync(tmp, { recursive: true, force: true });
});

function findChromium(): string | undefined {
  if (process.env.CHROMIUM)
    return existsSync(process.env.CHROMIUM) ? process.env.CHROMIUM : undefined;
  for (const dir of (process.env.PATH ?? "").split(path.delimiter)) {
    for (const name of ["chromium", "chromium-browser"]) {
      const p = path.join(dir, name);
      if (dir && existsSync(p)) return p;
    }
  }
  return undefined;
}

interface PageRow {
  id: string;
  probabilities: Record<string, number>;
  label: string;
  error?: string;
}

test("the exported page classifies pasted FASTA in Chromium as esmkit predict does", async (t) => {
  const chromiumPath = findChromium();
  if (!chromiumPath) {
    if (process.env.CI) throw new Error("required under CI: chromium");
    return t.skip("no chromium on PATH (or $CHROMIUM)");
  }
  const model = path.join(MODEL_FIX, "odd");
  const out = path.join(tmp, "site");

  // esmkit predict's answer for the six proteins.
  const predicted = spawnSync(
    process.execPath,
    [BIN, "predict", "--model", model, "--fasta", FASTA, "--quiet"],
    { encoding: "utf8", timeout: 300_000, env: { ...process.env, ESMKIT_WORKERS: "1" } },
  );
  assert.equal(predicted.status, 0, predicted.stderr);
  const expected = predicted.stdout
    .trim()
    .split("\n")
    .map((l) => JSON.parse(l) as { id: string; probabilities: Record<string, number> });
  assert.equal(expected.length, 6);

  // Export with the page and serve it, as a user would.
  child = spawn(
    process.execPath,
    [
      BIN,
      "export",
      "--model",
      model,
      "--out",
      out,
      "--web",
      "--quantize",
      "int8",
      "--serve",
      "--port",
      "0",
    ],
    { stdio: ["ignore", "ignore", "pipe"] },
  );
  let stderr = "";
  const url = await new Promise<string>((resolve, reject) => {
    child!.stderr!.on("data", (d: Buffer) => {
      stderr += d.toString();
      const m = /serving .* at (http:\/\/127\.0\.0\.1:\d+\/)/.exec(stderr);
      if (m) resolve(m[1]!);
    });
    child!.once("exit", (code) => reject(new Error(`esmkit export exited ${code}: ${stderr}`)));
  });

  const { chromium } = await import("playwright-core");
  const browser = await chromium.launch({
    executablePath: chromiumPath,
    args: ["--no-sandbox", "--disable-gpu", "--disable-background-networking"],
  });
  try {
    const page = await browser.newPage({ viewport: { width: 1100, height: 900 } });
    const outside: string[] = [];
    page.on("request", (r) => {
      const u = r.url();
      if (!u.startsWith(url) && !u.startsWith("blob:") && !u.startsWith("data:")) outside.push(u);
    });
    const errors: string[] = [];
    page.on("pageerror", (e) => errors.push(String(e)));
    const classify = async (dtype: string): Promise<PageRow[]> => {
      await page.goto(`${url}?dtype=${dtype}`);
      await page.waitForFunction('["ready", "error"].includes(document.body.dataset.state)', null, {
        timeout: 180_000,
      });
      assert.equal(
        await page.getAttribute("body", "data-state"),
        "ready",
        (await page.textContent("#status")) ?? "",
      );
      await page.fill("#fasta", readFileSync(FASTA, "utf8"));
      await page.click("#run");
      await page.waitForFunction('["done", "error"].includes(document.body.dataset.state)', null, {
        timeout: 180_000,
      });
      assert.equal(
        await page.getAttribute("body", "data-state"),
        "done",
        (await page.textContent("#status")) ?? "",
      );
      const res = (await page.evaluate("window.esmkitResults")) as {
        dtype: string;
        results: PageRow[];
      };
      assert.equal(res.dtype, dtype);
      return res.results;
    };

    const q8 = await classify("q8");
    const fp32 = await classify("fp32");
    assert.deepEqual(
      fp32.map((r) => r.id),
      expected.map((r) => r.id),
    );
    const d = maxProbDiff(
      fp32.map((r) => r.probabilities),
      expected.map((r) => r.probabilities),
    );
    const dq = maxProbDiff(
      q8.map((r) => r.probabilities),
      expected.map((r) => r.probabilities),
    );
    console.log(
      `page vs esmkit predict: float32 max |dP| ${d.toExponential(2)}, int8 ${dq.toFixed(4)}`,
    );
    assert.ok(d <= TOLERANCE, `float32 ${d}`);
    assert.ok(dq < 0.05, `int8 ${dq}`);
    assert.equal(await page.locator("#results tbody tr").count(), 6);
    assert.equal(
      await page.locator("#chart rect[fill]").count(),
      3 + 6 * 3,
      "legend + stacked bars",
    );
    mkdirSync(SCREENSHOTS, { recursive: true });
    await page.screenshot({ path: path.join(SCREENSHOTS, "export-page.png"), fullPage: true });

    // A chosen (or dropped) file fills the text box.
    await page.setInputFiles("#file", FASTA);
    await page.waitForFunction('document.querySelector("#fasta").value.includes(">P11766")');

    assert.deepEqual(outside, [], "every request stayed on the local server");
    assert.deepEqual(errors, []);
  } finally {
    await browser.close();
  }
  child.kill("SIGINT");
  const [code] = await once(child, "exit");
  assert.equal(code, 0, stderr);
  assert.match(stderr, /SIGINT: stopped/);
  child = undefined;
});
