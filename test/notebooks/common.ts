/** What the notebook tests share: the test virtualenv's Jupyter and the CI sizes. */
import * as path from "node:path";
import { REPO_ROOT } from "../helpers/python";

export const VENV_BIN = path.join(REPO_ROOT, ".venv", "bin");
export const NOTEBOOKS = path.join(REPO_ROOT, "notebooks");
export const SCREENSHOTS = path.join(REPO_ROOT, "out", "screenshots");
export const PLOTLY_MIME = "application/vnd.plotly.v1+json";

/**
 * CI sizes, read by the notebooks' `parameters` cells: 16 training proteins of at most
 * 128 tokens, 2 epochs of 2 optimizer steps. A value already set in the environment wins.
 */
export const SMALL: Record<string, string> = {
  ESMKIT_NB_TRAIN_EXAMPLES: "16",
  ESMKIT_NB_EVAL_EXAMPLES: "16",
  ESMKIT_NB_MAX_LENGTH: "128",
  ESMKIT_NB_BATCH_SIZE: "4",
  ESMKIT_NB_EPOCHS: "2",
};

export function smallSizes(): Record<string, string> {
  return Object.fromEntries(Object.entries(SMALL).filter(([k]) => !process.env[k]));
}
