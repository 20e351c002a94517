export {
  EXPORT_MANIFEST,
  EXTERNAL_DATA_CHOICES,
  type ExportManifest,
  type ExportOptions,
  type ExportQuantize,
  type ExportResult,
  type ExternalDataChoice,
  exportModel,
  QUANTIZE_CHOICES,
  readExportManifest,
} from "./export";
export {
  buildExportGraph,
  EXPORT_TASKS,
  type ExportGraphOptions,
  type ExportTask,
  TASK_OUTPUT,
} from "./onnx-model";
export {
  resolveRequestPath,
  type StaticServer,
  type StaticServerOptions,
  startStaticServer,
} from "./static-server";
