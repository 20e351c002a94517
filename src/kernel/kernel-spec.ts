/**
 * Register, find and remove the esmkit Jupyter kernel: tslab run by this package's Node
 * and this package's tslab, with esmkit resolvable from any notebook folder.
 *
 * A kernel spec is a folder `<jupyter data dir>/kernels/<name>/` with a kernel.json
 * (argv, env, display name). Ours also holds `node_modules/esmkit`, a link to this
 * package, and kernel.json's NODE_PATH points there, so `require("esmkit")` works in a
 * notebook that has no node_modules of its own. `metadata.esmkit` marks the spec as
 * ours: list and uninstall only touch specs that carry it.
 */
import { spawnSync } from "node:child_process";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { BACKEND_NAMES } from "../backend";
import { ConfigError } from "../errors";
import { packageRoot } from "../util/package-root";

export const DEFAULT_KERNEL_NAME = "esmkit";
export const DEFAULT_DISPLAY_NAME = "TypeScript (esmkit)";

/** Where a kernel spec goes (or is looked for). At most one of user/prefix. */
export interface KernelLocationOptions {
  /** The per-user kernels folder: `$JUPYTER_DATA_DIR/kernels` or the platform default. */
  user?: boolean;
  /** `<prefix>/share/jupyter/kernels` (Jupyter finds it when prefix is its sys.prefix or on JUPYTER_PATH). */
  prefix?: string;
  /**
   * The Python that runs Jupyter. Without `user`/`prefix`, install into its environment
   * (`sys.prefix`); its jupyter_core also supplies the exact search path for `list`.
   */
  python?: string;
  /** Environment to read JUPYTER_DATA_DIR, JUPYTER_PATH, HOME... from; default process.env. */
  env?: NodeJS.ProcessEnv;
}

export interface KernelInstallOptions extends KernelLocationOptions {
  /** Kernel name (folder name, `--ExecutePreprocessor.kernel_name`); default "esmkit". */
  name?: string;
  /** Name shown in the launcher; default "TypeScript (esmkit)". */
  displayName?: string;
  /** ESMKIT_BACKEND in the kernel: auto, tensorflow-gpu, tensorflow, wasm or cpu. */
  backend?: string;
  /** Thread count for the kernel (ESMKIT_THREADS, OMP_NUM_THREADS, POLARS_MAX_THREADS, UV_THREADPOOL_SIZE). */
  threads?: number;
}

export interface KernelUninstallOptions extends KernelLocationOptions {
  name?: string;
}

/** The kernel.json we write. */
export interface KernelJson {
  argv: string[];
  display_name: string;
  language: string;
  interrupt_mode: "signal";
  env: Record<string, string>;
  metadata: { esmkit: { version: string; packageRoot: string } };
}

export interface InstalledKernel {
  name: string;
  /** The kernel spec folder. */
  dir: string;
  displayName: string;
  /** The esmkit package the kernel runs. */
  packageRoot: string;
  version: string;
  backend?: string;
  threads?: number;
  /** Empty when the kernel can start; otherwise what is missing. */
  problems: string[];
}

const NAME_RE = /^[a-z0-9._-]+$/i;
const BACKENDS = ["auto", ...BACKEND_NAMES] as const;

function checkName(name: string): string {
  if (!NAME_RE.test(name)) {
    throw new ConfigError(
      `Invalid kernel name "${name}"; use letters, digits, ".", "_" or "-" (e.g. esmkit-gpu)`,
      { field: "name", value: name },
    );
  }
  return name;
}

/** jupyter_core's user data dir: JUPYTER_DATA_DIR, else the platform's default. */
export function userDataDir(env: NodeJS.ProcessEnv = process.env): string {
  if (env.JUPYTER_DATA_DIR) return path.resolve(env.JUPYTER_DATA_DIR);
  const home = env.HOME || env.USERPROFILE || os.homedir();
  if (process.platform === "darwin") return path.join(home, "Library", "Jupyter");
  if (process.platform === "win32") {
    return path.join(env.APPDATA || path.join(home, "AppData", "Roaming"), "jupyter");
  }
  return path.join(env.XDG_DATA_HOME || path.join(home, ".local", "share"), "jupyter");
}

interface PythonJupyter {
  prefix: string;
  dataDir: string;
  kernelDirs: string[];
}

const pythonCache = new Map<string, PythonJupyter>();

/** Ask a Python with jupyter_core where its Jupyter keeps kernels. */
function pythonJupyter(python: string, env: NodeJS.ProcessEnv): PythonJupyter {
  const cached = pythonCache.get(python);
  if (cached) return cached;
  const script =
    "import json, sys\nfrom jupyter_core.paths import jupyter_data_dir, jupyter_path\n" +
    "print(json.dumps({'prefix': sys.prefix, 'dataDir': jupyter_data_dir(), 'kernelDirs': jupyter_path('kernels')}))";
  const r = spawnSync(python, ["-c", script], { encoding: "utf8", env, timeout: 60_000 });
  if (r.error || r.status !== 0) {
    const why = r.error ? r.error.message : r.stderr.trim().split("\n").pop();
    throw new ConfigError(
      `--python ${python} cannot locate Jupyter (${why}); pass the Python that runs Jupyter (one with jupyter_core installed)`,
      { field: "python", value: python },
    );
  }
  const found = JSON.parse(r.stdout) as PythonJupyter;
  pythonCache.set(python, found);
  return found;
}

/** The kernels folder an install or uninstall with these options targets. */
export function kernelsDir(options: KernelLocationOptions = {}): string {
  const env = options.env ?? process.env;
  if (options.user && options.prefix) {
    throw new ConfigError("--user and --prefix exclude each other; pick one", {
      prefix: options.prefix,
    });
  }
  if (options.prefix) return path.resolve(options.prefix, "share", "jupyter", "kernels");
  if (options.python) {
    const py = pythonJupyter(options.python, env);
    return options.user
      ? path.join(py.dataDir, "kernels")
      : path.join(py.prefix, "share", "jupyter", "kernels");
  }
  return path.join(userDataDir(env), "kernels");
}

/** Every kernels folder Jupyter searches (plus `prefix`), in its order, existing or not. */
export function kernelSearchDirs(options: KernelLocationOptions = {}): string[] {
  const env = options.env ?? process.env;
  const dirs: string[] = [];
  if (options.prefix) dirs.push(path.resolve(options.prefix, "share", "jupyter", "kernels"));
  if (options.python) dirs.push(...pythonJupyter(options.python, env).kernelDirs);
  for (const p of (env.JUPYTER_PATH ?? "").split(path.delimiter)) {
    if (p) dirs.push(path.resolve(p, "kernels"));
  }
  dirs.push(path.join(userDataDir(env), "kernels"));
  for (const prefix of [env.VIRTUAL_ENV, env.CONDA_PREFIX]) {
    if (prefix) dirs.push(path.join(prefix, "share", "jupyter", "kernels"));
  }
  if (process.platform === "win32") {
    if (env.PROGRAMDATA) dirs.push(path.join(env.PROGRAMDATA, "jupyter", "kernels"));
  } else {
    dirs.push("/usr/local/share/jupyter/kernels", "/usr/share/jupyter/kernels");
  }
  return [...new Set(dirs)];
}

/** NODE_PATH entries: the link folder, then where this package's dependencies live. */
function nodePath(kernelDir: string, root: string): string[] {
  const entries = [path.join(kernelDir, "node_modules")];
  const own = path.join(root, "node_modules");
  if (fs.existsSync(own)) entries.push(own);
  // Installed as a dependency: its dependencies are hoisted beside it.
  if (path.basename(path.dirname(root)) === "node_modules") entries.push(path.dirname(root));
  return entries;
}

function threadEnv(threads: number | undefined): Record<string, string> {
  if (threads === undefined) return {};
  if (!Number.isInteger(threads) || threads < 1) {
    throw new ConfigError(`Invalid threads ${threads}; expected an integer >= 1`, {
      field: "threads",
      value: threads,
    });
  }
  const n = String(threads);
  // Our own workers, native TensorFlow/oneDNN, polars' pool and libuv's pool.
  return {
    ESMKIT_THREADS: n,
    OMP_NUM_THREADS: n,
    POLARS_MAX_THREADS: n,
    UV_THREADPOOL_SIZE: n,
  };
}

/** The kernel.json for a spec in `kernelDir` running the package at `root`. */
export function kernelJson(
  kernelDir: string,
  options: KernelInstallOptions = {},
  root = packageRoot(),
): KernelJson {
  const backend = options.backend?.trim().toLowerCase();
  if (backend !== undefined && !(BACKENDS as readonly string[]).includes(backend)) {
    throw new ConfigError(
      `Unknown backend "${options.backend}"; expected one of: ${BACKENDS.join(", ")}`,
      { field: "backend", value: options.backend },
    );
  }
  const version = JSON.parse(fs.readFileSync(path.join(root, "package.json"), "utf8")).version;
  return {
    argv: [
      process.execPath,
      path.join(root, "build", "src", "kernel", "launch.js"),
      "--config-path",
      "{connection_file}",
    ],
    display_name: options.displayName ?? DEFAULT_DISPLAY_NAME,
    language: "typescript",
    interrupt_mode: "signal",
    env: {
      NODE_PATH: nodePath(kernelDir, root).join(path.delimiter),
      ...(backend ? { ESMKIT_BACKEND: backend } : {}),
      ...threadEnv(options.threads),
    },
    metadata: { esmkit: { version, packageRoot: root } },
  };
}

function readSpec(dir: string): KernelJson | undefined {
  try {
    const spec = JSON.parse(fs.readFileSync(path.join(dir, "kernel.json"), "utf8"));
    return spec?.metadata?.esmkit ? (spec as KernelJson) : undefined;
  } catch {
    return undefined;
  }
}

function describe(name: string, dir: string, spec: KernelJson): InstalledKernel {
  const problems: string[] = [];
  const [node, launcher] = spec.argv ?? [];
  if (!node || !fs.existsSync(node)) problems.push(`node not found: ${node}`);
  if (!launcher || !fs.existsSync(launcher)) {
    problems.push(`launcher not found: ${launcher} (package moved or not built?)`);
  }
  if (!fs.existsSync(path.join(dir, "node_modules", "esmkit", "package.json"))) {
    problems.push(`broken link: ${path.join(dir, "node_modules", "esmkit")}`);
  }
  const env = spec.env ?? {};
  const threads = env.ESMKIT_THREADS;
  return {
    name,
    dir,
    displayName: spec.display_name,
    packageRoot: spec.metadata.esmkit.packageRoot,
    version: spec.metadata.esmkit.version,
    backend: env.ESMKIT_BACKEND,
    threads: threads === undefined ? undefined : Number(threads),
    problems,
  };
}

/**
 * Write the kernel spec. Replaces an earlier esmkit kernel of the same name; refuses to
 * overwrite someone else's kernel.
 */
export function installKernel(options: KernelInstallOptions = {}): InstalledKernel {
  const name = checkName(options.name ?? DEFAULT_KERNEL_NAME);
  const root = packageRoot();
  const dir = path.join(kernelsDir(options), name);
  const spec = kernelJson(dir, options, root);
  if (!fs.existsSync(spec.argv[1]!)) {
    throw new ConfigError(`${spec.argv[1]} is missing; build esmkit first (npm run build)`, {
      launcher: spec.argv[1],
    });
  }
  if (fs.existsSync(path.join(dir, "kernel.json")) && !readSpec(dir)) {
    throw new ConfigError(
      `${dir} holds a kernel that is not esmkit's; choose another --name or remove it with "jupyter kernelspec remove ${name}"`,
      { dir },
    );
  }
  fs.rmSync(dir, { recursive: true, force: true });
  fs.mkdirSync(path.join(dir, "node_modules"), { recursive: true });
  fs.symlinkSync(
    root,
    path.join(dir, "node_modules", "esmkit"),
    process.platform === "win32" ? "junction" : "dir",
  );
  fs.writeFileSync(path.join(dir, "kernel.json"), `${JSON.stringify(spec, null, 2)}\n`);
  return describe(name, dir, spec);
}

/** esmkit kernels in every folder Jupyter searches (and `prefix`), first match per name first. */
export function listKernels(options: KernelLocationOptions = {}): InstalledKernel[] {
  const found: InstalledKernel[] = [];
  for (const kernels of kernelSearchDirs(options)) {
    let names: string[];
    try {
      names = fs.readdirSync(kernels).sort();
    } catch {
      continue;
    }
    for (const name of names) {
      const spec = readSpec(path.join(kernels, name));
      if (spec) found.push(describe(name, path.join(kernels, name), spec));
    }
  }
  return found;
}

/**
 * Remove the esmkit kernel `name` from the location the options name, or, with no
 * location, from every searched folder that has it. Returns the removed folders.
 */
export function uninstallKernel(options: KernelUninstallOptions = {}): string[] {
  const name = checkName(options.name ?? DEFAULT_KERNEL_NAME);
  const targeted = Boolean(options.user || options.prefix || options.python);
  const candidates = targeted
    ? [path.join(kernelsDir(options), name)]
    : kernelSearchDirs(options).map((d) => path.join(d, name));
  const removed: string[] = [];
  for (const dir of candidates) {
    if (!readSpec(dir)) continue;
    fs.rmSync(dir, { recursive: true, force: true });
    removed.push(dir);
  }
  if (removed.length === 0) {
    throw new ConfigError(
      `No esmkit kernel named "${name}" in ${candidates.map(path.dirname).join(", ")}; "esmkit kernel list" shows the installed ones`,
      { name },
    );
  }
  return removed;
}
