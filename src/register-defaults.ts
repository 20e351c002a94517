/**
 * The plug-ins the lower layers leave open, registered from the top so that no layer
 * imports one above it (docs/architecture.md): the s3:// store of src/io/storage.ts and
 * the ESM-2 predictor loader of src/serve/predictor.ts. Both modules load on first use
 * (the AWS SDK only for an s3:// location, TensorFlow.js only for a predictor).
 *
 * The package's entry points call `registerDefaults()`: src/index.ts (`require("esmkit")`)
 * and src/cli/main.ts (the `esmkit` command). Calling it again changes nothing.
 */
import { registerStore } from "./io/storage";
import { setDefaultPredictorLoader } from "./serve/predictor";

let registered = false;

export function registerDefaults(): void {
  if (registered) return;
  registered = true;
  registerStore("s3", () =>
    (require("./aws/s3-store") as typeof import("./aws/s3-store")).s3Store(),
  );
  setDefaultPredictorLoader(async (dir) => {
    const { esm2PredictorLoader } = await import("./serve/esm2-loader");
    return esm2PredictorLoader(dir);
  });
}
