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
 * - The checker must also be able to *name* the types esmkit returns (a polars
 *   DataFrame): tslab emits a declaration for every cell's variables, and a type reached
 *   only as "esmkit/node_modules/nodejs-polars" fails with TS2742 ("cannot be named
 *   without a reference to ..."). So esmkit's own dependencies are forwarded too:
 *   `<cwd>/node_modules/<dependency>/...` reads the copy esmkit uses, for each
 *   dependency the notebook folder does not install itself. `require` finds the same
 *   copies through NODE_PATH.
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

/** Where esmkit's dependencies are installed: its own node_modules, or beside it when hoisted. */
export function dependencyDirs(root: string): string[] {
  const dirs = [path.join(root, "node_modules")];
  if (path.basename(path.dirname(root)) === "node_modules") dirs.push(path.dirname(root));
  return dirs;
}

/**
 * Map `<cwd>/node_modules/esmkit[/...]` onto `root[/...]`, and
 * `<cwd>/node_modules/<pkg>[/...]` onto the first of `depDirs` holding `<pkg>` when
 * `<cwd>/node_modules` lacks it. `<cwd>/node_modules/esmkit/node_modules/...` is left
 * unmapped (it does not exist), so that a lookup from esmkit's files goes on up to
 * `<cwd>/node_modules/<pkg>`, a name the cells can use. Other paths are unchanged.
 */
export function esmkitPathForwarder(
  cwd: string,
  root: string,
  depDirs: readonly string[] = [],
  exists: (p: string) => boolean = fs.existsSync,
): (p: string) => string {
  const local = path.join(cwd, "node_modules");
  const targets = new Map<string, string | undefined>();
  const target = (name: string) => {
    if (!targets.has(name)) {
      const own = exists(path.join(local, name));
      const dir = own ? undefined : depDirs.map((d) => path.join(d, name)).find(exists);
      targets.set(name, dir);
    }
    return targets.get(name);
  };
  return (p) => {
    const rel = path.relative(local, p);
    if (!rel || rel.startsWith("..") || path.isAbsolute(rel)) return p;
    const parts = rel.split(path.sep);
    const n = parts[0]!.startsWith("@") ? 2 : 1;
    if (parts.length < n) return p;
    const name = parts.slice(0, n).join("/");
    const rest = parts.slice(n);
    if (name === "esmkit") return rest[0] === "node_modules" ? p : path.join(root, ...rest);
    const dir = target(name);
    return dir ? path.join(dir, ...rest) : p;
  };
}

/** Patch TypeScript's `sys` (shared with tslab's converter) so cells can import esmkit. */
export function forwardEsmkitTypes(sys: TsSys, cwd: string, root: string): boolean {
  if (fs.existsSync(path.join(cwd, "node_modules", "esmkit"))) return false;
  const forward = esmkitPathForwarder(cwd, root, dependencyDirs(root));
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
    "getModifiedTime",
  ] as const) {
    wrap(name);
  }
  // Forwarded files keep their <cwd>/node_modules path: were they resolved to where they
  // really are, TypeScript would name their types through esmkit's own node_modules.
  const realpath = sys.realpath;
  if (typeof realpath === "function") {
    sys.realpath = (p: string) => (forward(p) === p ? realpath.call(sys, p) : p);
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
