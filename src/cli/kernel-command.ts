import { parseArgs } from "node:util";
import { ConfigError } from "../errors";
import {
  DEFAULT_DISPLAY_NAME,
  DEFAULT_KERNEL_NAME,
  type InstalledKernel,
  installKernel,
  kernelSearchDirs,
  listKernels,
  uninstallKernel,
} from "../kernel/kernel-spec";
import type { Command } from "./main";
import { numberFlag } from "./main";

const USAGE = `Usage: esmkit kernel install|list|uninstall [options]

Register tslab as a Jupyter kernel that runs this esmkit, importable from any notebook
folder (require("esmkit") and import ... from "esmkit").

  esmkit kernel install [options]
    --user                  per-user kernels ($JUPYTER_DATA_DIR or ~/.local/share/jupyter)  default
    --prefix P              P/share/jupyter/kernels (add P/share/jupyter to JUPYTER_PATH)
    --python PY             the Python that runs Jupyter: install into its sys.prefix
                            (with --user: into its user data dir)
    --name N                kernel name                                      ${DEFAULT_KERNEL_NAME}
    --display-name D        name shown in the launcher                       "${DEFAULT_DISPLAY_NAME}"
    --backend B             ESMKIT_BACKEND: auto, tensorflow-gpu, tensorflow, wasm, cpu
    --threads N             ESMKIT_THREADS, OMP_NUM_THREADS, POLARS_MAX_THREADS, UV_THREADPOOL_SIZE

  esmkit kernel list [--prefix P] [--python PY]
    esmkit kernels in every folder Jupyter searches (and P)

  esmkit kernel uninstall [--name N] [--user|--prefix P|--python PY]
    remove the kernel; without a location, wherever it is found
`;

const LOCATION = {
  user: { type: "boolean" },
  prefix: { type: "string" },
  python: { type: "string" },
} as const;

function line(k: InstalledKernel): string {
  const settings = [
    `esmkit ${k.version} at ${k.packageRoot}`,
    k.backend ? `backend ${k.backend}` : "",
    k.threads ? `${k.threads} threads` : "",
  ].filter(Boolean);
  const status = k.problems.length ? `  BROKEN: ${k.problems.join("; ")}` : "";
  return `  ${k.name.padEnd(16)} ${k.dir}\n  ${"".padEnd(16)} "${k.displayName}", ${settings.join(", ")}${status}`;
}

export const kernelCommand: Command = {
  summary: "install, list or uninstall the esmkit Jupyter kernel (tslab)",
  usage: USAGE,
  async run(argv) {
    const [action, ...rest] = argv;
    if (action === "install") {
      const { values: v } = parseArgs({
        args: rest,
        strict: true,
        allowPositionals: false,
        options: {
          ...LOCATION,
          name: { type: "string" },
          "display-name": { type: "string" },
          backend: { type: "string" },
          threads: { type: "string" },
        },
      });
      const k = installKernel({
        user: v.user,
        prefix: v.prefix,
        python: v.python,
        name: v.name,
        displayName: v["display-name"],
        backend: v.backend,
        threads: numberFlag("threads", v.threads),
      });
      process.stdout.write(`Installed kernel "${k.name}" ("${k.displayName}") in ${k.dir}\n`);
      if (v.prefix) {
        process.stdout.write(
          `Jupyter finds it when ${v.prefix}/share/jupyter is on JUPYTER_PATH or ${v.prefix} is its sys.prefix\n`,
        );
      }
      return 0;
    }
    if (action === "list") {
      const { values: v } = parseArgs({
        args: rest,
        strict: true,
        allowPositionals: false,
        options: { prefix: LOCATION.prefix, python: LOCATION.python },
      });
      const kernels = listKernels({ prefix: v.prefix, python: v.python });
      if (kernels.length === 0) {
        process.stdout.write(
          `No esmkit kernel found in:\n  ${kernelSearchDirs({ prefix: v.prefix, python: v.python }).join("\n  ")}\nRun "esmkit kernel install".\n`,
        );
        return 0;
      }
      process.stdout.write(`esmkit kernels (first one per name wins in Jupyter):\n`);
      process.stdout.write(`${kernels.map(line).join("\n")}\n`);
      return kernels.some((k) => k.problems.length > 0) ? 1 : 0;
    }
    if (action === "uninstall") {
      const { values: v } = parseArgs({
        args: rest,
        strict: true,
        allowPositionals: false,
        options: { ...LOCATION, name: { type: "string" } },
      });
      const removed = uninstallKernel({
        user: v.user,
        prefix: v.prefix,
        python: v.python,
        name: v.name,
      });
      process.stdout.write(`Removed ${removed.join(", ")}\n`);
      return 0;
    }
    throw new ConfigError(
      `expected an action: install, list or uninstall; got ${action === undefined ? "nothing" : `"${action}"`}`,
      { action },
    );
  },
};
