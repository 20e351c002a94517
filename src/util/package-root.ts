import { existsSync, readFileSync } from "node:fs";
import * as path from "node:path";

/** The folder holding esmkit's package.json (the repo root, or node_modules/esmkit). */
export function packageRoot(from: string = __dirname): string {
  for (let dir = from; ; dir = path.dirname(dir)) {
    const file = path.join(dir, "package.json");
    if (existsSync(file) && JSON.parse(readFileSync(file, "utf8")).name === "esmkit") return dir;
    if (path.dirname(dir) === dir) {
      throw new Error(`esmkit's package.json not found above ${from}`);
    }
  }
}
