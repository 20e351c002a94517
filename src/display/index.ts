/**
 * Rich output for notebooks (tslab kernel), with a terminal fallback: the same calls
 * print text summaries and a progress line on stderr outside a notebook.
 *
 *   import { display, lossChart } from "esmkit";
 *   display.plotly(lossChart(events));
 *   const chart = display.liveChart(); trainer.on("event", chart.push);
 */
import { type LiveChart, type LiveChartOptions, liveChart } from "./live-chart";
import {
  figureSummary,
  type PlotlyFigure,
  type PlotlyOptions,
  plotlyBundle,
  takePlotlyJs,
} from "./plotly";
import { type ProgressBar, type ProgressOptions, progressBar } from "./progress";
import { currentSink, inNotebook, sinkScope } from "./sink";
import { type TableData, type TableOptions, tableBundle } from "./table";

export const display = {
  /** Show a plotly figure: the plotly MIME type, an offline HTML fallback and a summary. */
  plotly(figure: PlotlyFigure, options: PlotlyOptions = {}): void {
    const sink = currentSink();
    if (sink.kind === "terminal") {
      sink.out.write(`${figureSummary(figure)}\n`);
      return;
    }
    const withLibrary = takePlotlyJs(sinkScope(sink), options.includePlotlyJs);
    const data = plotlyBundle(figure, { withLibrary, height: options.height });
    sink.write({ data, metadata: {}, transient: {} }, false);
  },

  /** Show a DataFrame or an array of records as a table (first `maxRows` rows). */
  table(data: TableData, options: TableOptions = {}): void {
    const sink = currentSink();
    const bundle = tableBundle(data, options);
    if (sink.kind === "terminal") {
      sink.out.write(`${bundle["text/plain"]}\n`);
      return;
    }
    sink.write({ data: bundle, metadata: {}, transient: {} }, false);
  },

  /** A progress bar updated in place; call `finish()` at the end. */
  progress(label: string, total: number, options?: ProgressOptions): ProgressBar {
    return progressBar(currentSink(), label, total, options);
  },

  /** A training chart fed by trainer events (`chart.push`), redrawn in place. */
  liveChart(options?: LiveChartOptions): LiveChart {
    return liveChart(currentSink(), options);
  },

  /** True inside a notebook kernel. */
  inNotebook,
};

export {
  CLASS_COLORS,
  classBalanceChart,
  confusionMatrixChart,
  type EmbeddingPoint,
  embeddingScatter,
  evalMetrics,
  type LabelProbabilities,
  labelBalanceChart,
  labelMetricChart,
  lengthHistogram,
  lossChart,
  membraneProbabilityChart,
  metricNames,
  metricsChart,
  type ProteinPrediction,
  probabilityHeatmap,
  rocChart,
  type TrainerEvalEvent,
  type TrainerEvent,
  type TrainerStepEvent,
  trainingChart,
} from "./charts";
export type { LiveChart, LiveChartOptions } from "./live-chart";
export { type PcaResult, pca } from "./pca";
export {
  figureSummary,
  PLOTLY_MIME,
  type PlotlyFigure,
  type PlotlyOptions,
  type PlotlyTrace,
  plotlyBundle,
} from "./plotly";
export type { ProgressBar, ProgressOptions } from "./progress";
export {
  type DisplayMessage,
  type DisplaySink,
  type DisplayWriter,
  type MimeBundle,
  setDisplaySink,
  type TextStream,
} from "./sink";
export type { TableData, TableOptions } from "./table";
