/**
 * The process a registered esmkit kernel runs: tslab's kernel, started from this
 * package's own tslab, with `esmkit` made importable from any notebook folder.
 *
 * Two resolvers need to find the package, and they look in different places:
 * - Node's `require` (what cells run) honours NODE_PATH, which the kernel spec sets to
 *   a folder holding an `esmkit` link to this package (see kernel-spec.ts).
 * - tslab type-checks each cell with its own TypeScript, whose Node10 resolution knows
 *   nothing of NODE_PATH, so `import { display } from "esmkit"` would fail with
 *   "Cannot find module". tslab solves the same problem for `import "tslab"` by
 *   forwarding `<cwd>/node_modules/tslab/...` reads to its own files; we forward
 *   `<cwd>/node_modules/esmkit/...` to this package the same way, unless the notebook
 *   folder has a real install of its own (which then wins for both resolvers).
 *
 * tslab's local-install lookup is turned off (`enableFindLocal: false`): the display
 * bridge talks to the `tslab/dist/jupyter` module of the tslab that runs the kernel.
 */
import * as fs from "node:fs";
import * as path from "node:path";
import { packageRoot } from "../util/package-root";

interface TsSys {
  fileExists(p: string): boolean;
  directoryExists(p: string): boolean;
  readFile(p: string, encoding?: string): string | undefined;
  readDirectory(p: string, ...rest: unknown[]): string[];
  realpath?(p: string): string;
  getModifiedTime?(p: string): Date | undefined;
}

/** Map `<cwd>/node_modules/esmkit[/...]` onto `root[/...]`; other paths are unchanged. */
export function esmkitPathForwarder(cwd: string, root: string): (p: string) => string {
  const fake = path.join(cwd, "node_modules", "esmkit");
  return (p) => {
    const rel = path.relative(fake, p);
    if (rel.startsWith("..") || path.isAbsolute(rel)) return p;
    return path.join(root, rel);
  };
}

/** Patch TypeScript's `sys` (shared with tslab's converter) so cells can import esmkit. */
export function forwardEsmkitTypes(sys: TsSys, cwd: string, root: string): boolean {
  if (fs.existsSync(path.join(cwd, "node_modules", "esmkit"))) return false;
  const forward = esmkitPathForwarder(cwd, root);
  const wrap = <K extends keyof TsSys>(name: K) => {
    const original = sys[name] as ((p: string, ...rest: unknown[]) => unknown) | undefined;
    if (typeof original !== "function") return;
    (sys as unknown as Record<string, unknown>)[name] = (p: string, ...rest: unknown[]) =>
      original.call(sys, forward(p), ...rest);
  };
  for (const name of [
    "fileExists",
    "directoryExists",
    "readFile",
    "readDirectory",
    "realpath",
    "getModifiedTime",
  ] as const) {
    wrap(name);
  }
  return true;
}

function configPath(argv: string[]): string {
  const i = argv.indexOf("--config-path");
  const value = i >= 0 ? argv[i + 1] : undefined;
  if (!value) {
    throw new Error(
      `esmkit kernel: expected "--config-path <connection file>", got: ${argv.join(" ")}`,
    );
  }
  return value;
}

export function launch(argv: string[]): void {
  const tslabDir = path.dirname(require.resolve("tslab/package.json"));
  try {
    const ts = require(require.resolve("@tslab/typescript-for-tslab", { paths: [tslabDir] }));
    forwardEsmkitTypes(ts.sys, process.cwd(), packageRoot());
  } catch (e) {
    // Without the patch `require("esmkit")` still works; only typed imports do not.
    console.error(`esmkit kernel: typed "import ... from 'esmkit'" unavailable: ${e}`);
  }
  const { startKernel } = require("tslab/dist/main");
  startKernel({ configPath: configPath(argv), enableFindLocal: false, jsKernel: false });
}

if (require.main === module) launch(process.argv.slice(2));
