/** Protein embeddings: ESM-2 hidden states pooled per protein, streamed to Parquet. */

export {
  createEmbedder,
  EMBEDDING_POOLINGS,
  type Embedder,
  type EmbedderOptions,
  type EmbeddingPooling,
  type EmbedSettings,
  LAYER_CONVENTION,
  loadEmbedder,
  POOLING_CONVENTION,
  type ProteinEmbedding,
  resolveEmbedSettings,
} from "../onnx/embedder";
export {
  DEFAULT_WINDOW,
  type EmbeddingRow,
  type EmbedOptions,
  type EmbedProgress,
  type EmbedSummary,
  type EmbedToParquetOptions,
  embed,
  embedSequences,
  embedToParquet,
  PARQUET_METADATA_KEY,
} from "./embed";
export {
  type ByteSink,
  type ColumnKind,
  type ColumnSpec,
  type ColumnValues,
  type FloatMatrix,
  fileSink,
  ParquetStreamWriter,
  type ParquetWriterOptions,
} from "./parquet-writer";
export { type RecordSourceOptions, readSequenceRecords, type SequenceRecord } from "./records";
