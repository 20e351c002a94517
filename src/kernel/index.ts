/** The esmkit Jupyter kernel: tslab with esmkit importable from any notebook folder. */
export {
  DEFAULT_DISPLAY_NAME,
  DEFAULT_KERNEL_NAME,
  type InstalledKernel,
  installKernel,
  type KernelInstallOptions,
  type KernelJson,
  type KernelLocationOptions,
  type KernelUninstallOptions,
  kernelJson,
  kernelSearchDirs,
  kernelsDir,
  listKernels,
  uninstallKernel,
  userDataDir,
} from "./kernel-spec";
