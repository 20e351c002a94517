import { BACKEND_NAMES } from "../backend";
import {
  DEFAULT_DISPLAY_NAME,
  DEFAULT_KERNEL_NAME,
  type InstalledKernel,
  installKernel,
  kernelSearchDirs,
  listKernels,
  uninstallKernel,
} from "../kernel/kernel-spec";
import { flag } from "../util/flags";
import { defineCommand, defineGroup } from "./command";

const user = flag.bool(
  "per-user kernels ($JUPYTER_DATA_DIR or ~/.local/share/jupyter); the default for install",
  { conflicts: ["prefix"] },
);
const prefix = flag.string("P/share/jupyter/kernels (add P/share/jupyter to JUPYTER_PATH)", {
  value: "P",
  conflicts: ["user"],
});
const python = flag.string(
  "the Python that runs Jupyter: its sys.prefix (with --user: its user data dir)",
  { value: "PY" },
);
const name = flag.string("kernel name", { value: "N", default: DEFAULT_KERNEL_NAME });

function line(k: InstalledKernel): string {
  const settings = [
    `esmkit ${k.version} at ${k.packageRoot}`,
    k.backend ? `backend ${k.backend}` : "",
    k.threads ? `${k.threads} threads` : "",
  ].filter(Boolean);
  const status = k.problems.length ? `  BROKEN: ${k.problems.join("; ")}` : "";
  return `  ${k.name.padEnd(16)} ${k.dir}\n  ${"".padEnd(16)} "${k.displayName}", ${settings.join(", ")}${status}`;
}

const install = defineCommand({
  name: "kernel install",
  summary: "register tslab, running this esmkit, as a Jupyter kernel",
  description: `
Register tslab as a Jupyter kernel that runs this esmkit, importable from any notebook
folder (require("esmkit") and import ... from "esmkit").`,
  flags: {
    user,
    prefix,
    python,
    name,
    "display-name": flag.string("name shown in the launcher", {
      value: "D",
      default: DEFAULT_DISPLAY_NAME,
    }),
    backend: flag.choice(["auto", ...BACKEND_NAMES], "ESMKIT_BACKEND of the kernel"),
    threads: flag.int("ESMKIT_THREADS, OMP_NUM_THREADS, POLARS_MAX_THREADS, UV_THREADPOOL_SIZE", {
      min: 1,
    }),
  },
  async run(v) {
    const k = installKernel({
      user: v.user,
      prefix: v.prefix,
      python: v.python,
      name: v.name,
      displayName: v["display-name"],
      backend: v.backend,
      threads: v.threads,
    });
    process.stdout.write(`Installed kernel "${k.name}" ("${k.displayName}") in ${k.dir}\n`);
    if (v.prefix) {
      process.stdout.write(
        `Jupyter finds it when ${v.prefix}/share/jupyter is on JUPYTER_PATH or ${v.prefix} is its sys.prefix\n`,
      );
    }
    return 0;
  },
});

const list = defineCommand({
  name: "kernel list",
  summary: "esmkit kernels in every folder Jupyter searches (exit 1 if one is broken)",
  description: "List the esmkit kernels in every folder Jupyter searches (and --prefix).",
  flags: { prefix, python },
  async run(v) {
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
  },
});

const uninstall = defineCommand({
  name: "kernel uninstall",
  summary: "remove the kernel",
  description: "Remove the kernel; without a location, wherever it is found.",
  flags: { user, prefix, python, name },
  async run(v) {
    const removed = uninstallKernel({
      user: v.user,
      prefix: v.prefix,
      python: v.python,
      name: v.name,
    });
    process.stdout.write(`Removed ${removed.join(", ")}\n`);
    return 0;
  },
});

export const kernelCommand = defineGroup({
  name: "kernel",
  summary: "install, list or uninstall the esmkit Jupyter kernel (tslab)",
  description: `
The esmkit kernel is tslab running this esmkit: notebooks in any folder can
require("esmkit") or import ... from "esmkit".`,
  commands: [install, list, uninstall],
});
