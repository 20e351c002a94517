/**
 * A JupyterLab server for tests: `jupyter lab` from the test virtualenv on 127.0.0.1, a
 * free port and a random token, every Jupyter folder (config, data, runtime, settings,
 * workspaces) under a temporary home so nothing of the user's is read or written, and
 * the app exposed to the page (`window.jupyterapp`) for test/notebooks/lab-probe.js.
 */
import { type ChildProcess, spawn } from "node:child_process";
import { randomBytes } from "node:crypto";
import { existsSync, mkdirSync, openSync, readdirSync, readFileSync, writeFileSync } from "node:fs";
import * as path from "node:path";
import type { Page } from "playwright-core";
import { REPO_ROOT } from "../helpers/python";

export interface LabServer {
  /** http://127.0.0.1:PORT */
  origin: string;
  token: string;
  /** The folder served (notebook paths are relative to it). */
  root: string;
  /** A URL under the server, with the token. */
  url(route: string): string;
  /** The server's log so far (for failure messages). */
  log(): string;
  stop(): Promise<void>;
}

export interface LabOptions {
  jupyter: string;
  /** Folder to serve. */
  root: string;
  /** Temporary folder for the Jupyter folders and the log. */
  home: string;
  /** Environment of the server and so of its kernels. */
  env: NodeJS.ProcessEnv;
  timeoutMs?: number;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

export async function startLab(options: LabOptions): Promise<LabServer> {
  const dir = (name: string) => {
    const p = path.join(options.home, name);
    mkdirSync(p, { recursive: true });
    return p;
  };
  const runtime = dir("runtime");
  // No "notified about Jupyter news?" toast over the notebooks in screenshots.
  const settings = dir(path.join("settings", "@jupyterlab", "apputils-extension"));
  writeFileSync(
    path.join(settings, "notification.jupyterlab-settings"),
    JSON.stringify({ fetchNews: "false" }),
  );
  const token = randomBytes(16).toString("hex");
  const logFile = path.join(options.home, "server.log");
  const env = {
    ...options.env,
    JUPYTER_CONFIG_DIR: dir("config"),
    JUPYTER_DATA_DIR: dir("data"),
    JUPYTER_RUNTIME_DIR: runtime,
    JUPYTERLAB_SETTINGS_DIR: dir("settings"),
    JUPYTERLAB_WORKSPACES_DIR: dir("workspaces"),
  };
  const args = [
    "lab",
    "--no-browser",
    "--ServerApp.ip=127.0.0.1",
    "--ServerApp.port=0", // the OS picks a free port; the server writes it to its runtime file
    "--ServerApp.port_retries=0",
    `--IdentityProvider.token=${token}`,
    `--ServerApp.root_dir=${options.root}`,
    "--LabApp.extension_manager=readonly", // no package index lookups
    "--LabApp.expose_app_in_browser=True",
    // Nothing fetched from the network: no news, no update check.
    "--LabApp.news_url=",
    "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
  ];
  if (process.getuid?.() === 0) args.push("--allow-root");
  const log = openSync(logFile, "w");
  const child: ChildProcess = spawn(options.jupyter, args, {
    env,
    stdio: ["ignore", log, log],
    detached: true, // its own process group: stop() ends kernels with it
  });
  const readLog = () => (existsSync(logFile) ? readFileSync(logFile, "utf8") : "");
  let exited: number | null | undefined;
  child.on("exit", (code) => {
    exited = code;
  });
  const stop = async () => {
    if (exited !== undefined || child.pid === undefined) return;
    try {
      process.kill(-child.pid, "SIGTERM");
    } catch {
      return;
    }
    for (let i = 0; i < 100 && exited === undefined; i++) await sleep(100);
    if (exited === undefined) process.kill(-child.pid, "SIGKILL");
  };

  const deadline = Date.now() + (options.timeoutMs ?? 120_000);
  let port: number | undefined;
  while (port === undefined) {
    if (exited !== undefined) throw new Error(`jupyter lab exited ${exited}:\n${readLog()}`);
    if (Date.now() > deadline) {
      await stop();
      throw new Error(`jupyter lab did not start:\n${readLog()}`);
    }
    const file = readdirSync(runtime).find((f) => /^jpserver-\d+\.json$/.test(f));
    if (file) {
      try {
        port = JSON.parse(readFileSync(path.join(runtime, file), "utf8")).port;
      } catch {
        // written while we read: try again
      }
    }
    await sleep(200);
  }
  const origin = `http://127.0.0.1:${port}`;
  return {
    origin,
    token,
    root: options.root,
    url: (route) => `${origin}/${route}${route.includes("?") ? "&" : "?"}token=${token}`,
    log: readLog,
    stop,
  };
}

const PROBE = path.join(REPO_ROOT, "test", "notebooks", "lab-probe.js");

/** Install the probe in every document the page loads (reloads included). */
export async function installProbe(page: Page): Promise<void> {
  await page.addInitScript({ content: readFileSync(PROBE, "utf8") });
}

/**
 * Call `esmkitProbe.<name>(...args)` in the page. V8's inspector holds the promise that
 * page.evaluate awaits only weakly: a garbage collection while it is pending (likely while
 * a notebook's cells run) fails the call with "Resulting promise was garbage collected".
 * So the page keeps each pending call in a set until it settles, and what comes back is
 * the settled value.
 */
export async function probe<T>(page: Page, name: string, ...args: unknown[]): Promise<T> {
  const call = `window.esmkitProbe.${name}(${args.map((a) => JSON.stringify(a)).join(", ")})`;
  return (await page.evaluate(`(() => {
    const pending = (window.esmkitPending ??= new Set());
    const p = Promise.resolve(${call}).finally(() => pending.delete(p));
    pending.add(p);
    return p;
  })()`)) as T;
}

/** Load JupyterLab at `route` and wait until the app is up. */
export async function openLab(page: Page, lab: LabServer, route: string): Promise<void> {
  await page.goto(lab.url(route));
  await page.waitForFunction("window.jupyterapp && window.esmkitProbe.ready()", undefined, {
    timeout: 120_000,
  });
}
