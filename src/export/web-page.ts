/**
 * The static page an export can carry (`esmkit export --web`): index.html and app.js
 * (src/export/page/) plus, under vendor/, the files it runs on, copied from the
 * installed packages so that nothing is fetched from a CDN:
 *
 *   vendor/transformers.min.js                   @huggingface/transformers' browser bundle
 *                                                (onnxruntime-web's JavaScript inside)
 *   vendor/ort-wasm-simd-threaded.asyncify.mjs   onnxruntime-web's WebAssembly loader
 *   vendor/ort-wasm-simd-threaded.asyncify.wasm  and binary (about 27 MB), the build
 *                                                that bundle loads
 *
 * The onnxruntime-web files come from the copy @huggingface/transformers depends on,
 * and its version must be the one the bundle was built with (checked).
 */
import { existsSync, promises as fsp, readFileSync } from "node:fs";
import { createRequire } from "node:module";
import * as path from "node:path";
import { ConfigError } from "../errors";
import { packageRoot } from "../util/package-root";

export const PAGE_FILES = ["index.html", "app.js"] as const;
const ORT_FILES = ["ort-wasm-simd-threaded.asyncify.mjs", "ort-wasm-simd-threaded.asyncify.wasm"];
const BUNDLE = "transformers.min.js";

interface VendorFile {
  from: string;
  to: string;
}

/** Where the vendored files are installed; a ConfigError if they are missing. */
export function vendorFiles(): VendorFile[] {
  const req = createRequire(__filename);
  let main: string;
  try {
    main = req.resolve("@huggingface/transformers");
  } catch (e) {
    throw new ConfigError(
      "The web page needs @huggingface/transformers (an esmkit dependency); run npm ci",
      {},
      { cause: e },
    );
  }
  const dist = path.dirname(main);
  const ortMain = createRequire(main).resolve("onnxruntime-web");
  const ortDist = path.dirname(ortMain);
  const ortVersion = (
    JSON.parse(readFileSync(path.join(ortDist, "..", "package.json"), "utf8")) as {
      version: string;
    }
  ).version;
  const bundle = path.join(dist, BUNDLE);
  // The bundle names the onnxruntime-web build it loads (for its CDN default).
  if (!readFileSync(bundle, "latin1").includes(ortVersion)) {
    throw new ConfigError(
      `${bundle} was not built with onnxruntime-web ${ortVersion} (the installed copy); reinstall with npm ci`,
      { ortVersion },
    );
  }
  const files: VendorFile[] = [
    { from: bundle, to: BUNDLE },
    ...ORT_FILES.map((f) => ({ from: path.join(ortDist, f), to: f })),
  ];
  for (const f of files) {
    if (!existsSync(f.from)) {
      throw new ConfigError(`${f.from} is missing; reinstall with npm ci`, { file: f.from });
    }
  }
  return files;
}

/** Writes the page and its vendored runtime into an export folder. */
export async function writeWebPage(dir: string): Promise<void> {
  const pageDir = path.join(packageRoot(), "src", "export", "page");
  for (const f of PAGE_FILES) await fsp.copyFile(path.join(pageDir, f), path.join(dir, f));
  await fsp.mkdir(path.join(dir, "vendor"), { recursive: true });
  for (const f of vendorFiles()) await fsp.copyFile(f.from, path.join(dir, "vendor", f.to));
}
