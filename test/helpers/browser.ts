/**
 * Debian's Chromium for the tests that look at pages (.ci/run installs it): found on
 * PATH or at `$CHROMIUM`, driven by playwright-core (which downloads no browser). Tests
 * call `needs(t, found, reason)`: a developer machine without it skips, CI fails.
 */
import { existsSync } from "node:fs";
import * as path from "node:path";
import type { Browser, LaunchOptions } from "playwright-core";

/** Headless Chromium with nothing but the page: no network of its own, no profile reuse. */
export const CHROMIUM_FLAGS = [
  "--headless",
  "--no-sandbox",
  "--disable-gpu",
  "--disable-quic",
  "--no-first-run",
  "--disable-background-networking",
  "--disable-component-update",
  "--disable-sync",
];

export function findChromium(): string | undefined {
  if (process.env.CHROMIUM) {
    return existsSync(process.env.CHROMIUM) ? process.env.CHROMIUM : undefined;
  }
  for (const dir of (process.env.PATH ?? "").split(path.delimiter)) {
    for (const name of ["chromium", "chromium-browser"]) {
      const p = path.join(dir, name);
      if (dir && existsSync(p)) return p;
    }
  }
  return undefined;
}

export const CHROMIUM_HINT = "Chromium not found (apt-get install -y chromium, or set CHROMIUM)";

/** True when present; else skip (developer machine) or throw (CI). */
export function needs(t: { skip(reason: string): void }, found: unknown, reason: string): boolean {
  if (found) return true;
  if (process.env.CI) throw new Error(`required under CI: ${reason}`);
  t.skip(reason);
  return false;
}

/** Chromium under playwright-core, on a fresh temporary profile (playwright's default). */
export async function launchChromium(
  executablePath: string,
  options: LaunchOptions = {},
): Promise<Browser> {
  const { chromium } = await import("playwright-core");
  // playwright adds its own --headless; ours would be a duplicate.
  const args = CHROMIUM_FLAGS.filter((f) => f !== "--headless");
  return chromium.launch({ executablePath, headless: true, args, ...options });
}
