/**
 * Where data comes from and goes to. Callers name a location as a string (a local
 * path, `http(s)://...`, `s3://...`); a scheme registry resolves it, so a
 * new store plugs in with `registerStore` without touching any caller. Local files and
 * http(s) are built in; the s3 store (src/aws/s3-store.ts) is registered from the top,
 * by src/register-defaults.ts: this layer knows no store above it.
 */
import { createReadStream, existsSync, readdirSync, renameSync } from "node:fs";
import { mkdir, mkdtemp, rename, rm, stat } from "node:fs/promises";
import * as path from "node:path";
import { Readable } from "node:stream";
import { StorageError } from "../errors";
import {
  isProcessAlive,
  removeDeadTemporaries,
  temporaryOwner,
  trackTemporary,
} from "../util/temporaries";

export interface TransferProgress {
  /** Bytes moved so far. */
  bytes: number;
  /** Total bytes, when the source says. */
  total?: number;
}

export interface ReadOptions {
  onProgress?: (p: TransferProgress) => void;
}

export interface OpenedInput {
  stream: Readable;
  /** Size in bytes when known up front. */
  size?: number;
  /** A display name for messages (never carries credentials). */
  displayName: string;
}

/**
 * A directory being written. Files go to `localDir`; `commit()` publishes them in one
 * step (rename for local, upload for remote stores) and `abort()` removes the
 * half-written output, so a failed run never leaves a partial result in place.
 */
export interface OutputDir {
  localDir: string;
  displayName: string;
  commit(): Promise<void>;
  abort(): Promise<void>;
}

export interface Store {
  openRead(location: string, options: ReadOptions): Promise<OpenedInput>;
  openOutputDir(location: string, options: { overwrite: boolean }): Promise<OutputDir>;
}

/** A store, or how to make it on first use (so the AWS SDK loads only for an s3:// location). */
const stores = new Map<string, Store | (() => Store)>();

/**
 * Register a store for a URL scheme such as "s3" (without the colon). Given a function,
 * it is called the first time a location of that scheme is opened.
 */
export function registerStore(scheme: string, store: Store | (() => Store)): void {
  stores.set(scheme.toLowerCase(), store);
}

/** The scheme of a location ("file" for plain paths, including Windows drive letters). */
export function schemeOf(location: string): string {
  const m = /^([a-zA-Z][a-zA-Z0-9+.-]+):\/\//.exec(location);
  return m ? m[1]!.toLowerCase() : "file";
}

function storeFor(location: string): Store {
  const scheme = schemeOf(location);
  let store = stores.get(scheme);
  if (!store) {
    throw new StorageError(
      `Unsupported location "${redact(location)}": scheme "${scheme}" is not supported (supported: local paths, ${[
        ...stores.keys(),
      ]
        .filter((s) => s !== "file")
        .map((s) => `${s}://`)
        .join(", ")})`,
      { location: redact(location), scheme },
    );
  }
  if (typeof store === "function") {
    store = store();
    stores.set(scheme, store);
  }
  return store;
}

/** Strip user:password from URLs and query strings that may carry signatures. */
export function redact(location: string): string {
  try {
    if (schemeOf(location) === "file") return location;
    const u = new URL(location);
    if (u.username || u.password) {
      u.username = "***";
      u.password = "";
    }
    if (u.search) u.search = "?…";
    return u.toString();
  } catch {
    return location;
  }
}

export function openRead(location: string, options: ReadOptions = {}): Promise<OpenedInput> {
  return storeFor(location).openRead(location, options);
}

export function openOutputDir(
  location: string,
  options: { overwrite?: boolean } = {},
): Promise<OutputDir> {
  return storeFor(location).openOutputDir(location, { overwrite: options.overwrite ?? false });
}

/** Read a whole input into a string (UTF-8). */
export async function readText(location: string, options: ReadOptions = {}): Promise<string> {
  const input = await openRead(location, options);
  const chunks: Buffer[] = [];
  for await (const chunk of input.stream) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks).toString("utf8");
}

function withProgress(stream: Readable, total: number | undefined, options: ReadOptions): Readable {
  const report = options.onProgress;
  if (!report) return stream;
  let bytes = 0;
  stream.on("data", (chunk: Buffer) => {
    bytes += chunk.length;
    report({ bytes, total });
  });
  return stream;
}

const fileStore: Store = {
  async openRead(location, options) {
    const file = location.startsWith("file://") ? new URL(location).pathname : location;
    let size: number;
    try {
      const st = await stat(file);
      if (st.isDirectory()) {
        throw new StorageError(`${file} is a directory, expected a file`, { location: file });
      }
      size = st.size;
    } catch (e) {
      if (e instanceof StorageError) throw e;
      throw new StorageError(
        `Cannot read ${file}: ${(e as NodeJS.ErrnoException).code ?? e}`,
        {
          location: file,
        },
        { cause: e },
      );
    }
    const stream = createReadStream(file, { highWaterMark: 1 << 20 });
    return { stream: withProgress(stream, size, options), size, displayName: file };
  },

  async openOutputDir(location, { overwrite }) {
    const dir = path.resolve(
      location.startsWith("file://") ? new URL(location).pathname : location,
    );
    const existing = await stat(dir).catch(() => undefined);
    if (existing && !existing.isDirectory()) {
      throw new StorageError(`Output ${dir} exists and is not a directory`, { location: dir });
    }
    await mkdir(path.dirname(dir), { recursive: true });
    removeDeadStaging(dir);
    // `.<name>.partial-<pid>-XXXXXX`: the pid lets a later run remove it once we are gone.
    const staging = await mkdtemp(
      path.join(path.dirname(dir), `.${path.basename(dir)}.partial-${process.pid}-`),
    );
    const untrack = trackTemporary(staging);
    return {
      localDir: staging,
      displayName: dir,
      async commit() {
        try {
          if (existing || (await stat(dir).catch(() => undefined))) {
            if (!overwrite) {
              await rm(staging, { recursive: true, force: true });
              throw new StorageError(
                `Output ${dir} already exists; choose another directory or pass overwrite`,
                { location: dir },
              );
            }
            const old = `${staging}-old`;
            await rename(dir, old);
            await rename(staging, dir);
            await rm(old, { recursive: true, force: true });
          } else {
            await rename(staging, dir);
          }
        } finally {
          untrack();
        }
      },
      async abort() {
        await rm(staging, { recursive: true, force: true });
        untrack();
      },
    };
  },
};

/**
 * Remove the staging directories of `dir` left by processes that are gone (kill -9 while
 * preparing). One that died between moving the old output aside and putting the new one
 * in place left the old output as `<staging>-old`: it goes back to `dir` first.
 */
function removeDeadStaging(dir: string): void {
  const parent = path.dirname(dir);
  const base = `.${path.basename(dir)}`;
  if (!existsSync(dir)) {
    const old = readdirSync(parent).find((name) => {
      const pid = temporaryOwner(name, base);
      return pid !== undefined && name.endsWith("-old") && !isProcessAlive(pid);
    });
    if (old) renameSync(path.join(parent, old), dir);
  }
  removeDeadTemporaries(parent, base);
}

const httpStore: Store = {
  async openRead(location, options) {
    let res: Response;
    // fetch() refuses a URL with user:password (and would quote it in its errors): they
    // go as a Basic Authorization header instead.
    const url = new URL(location);
    const headers: Record<string, string> = {};
    if (url.username || url.password) {
      const user = `${decodeURIComponent(url.username)}:${decodeURIComponent(url.password)}`;
      headers.authorization = `Basic ${Buffer.from(user).toString("base64")}`;
      url.username = "";
      url.password = "";
    }
    try {
      res = await fetch(url, { redirect: "follow", headers });
    } catch (e) {
      const why = (e as Error).message.split(url.href).join(redact(location));
      throw new StorageError(
        `Cannot fetch ${redact(location)}: ${why}`,
        {
          location: redact(location),
        },
        { cause: e },
      );
    }
    if (!res.ok || !res.body) {
      throw new StorageError(
        `Fetching ${redact(location)} failed: HTTP ${res.status} ${res.statusText}`,
        {
          location: redact(location),
          status: res.status,
        },
      );
    }
    const len = Number(res.headers.get("content-length"));
    const size = Number.isFinite(len) && len > 0 ? len : undefined;
    // biome-ignore lint/suspicious/noExplicitAny: web ReadableStream vs node typings
    const stream = Readable.fromWeb(res.body as any);
    return { stream: withProgress(stream, size, options), size, displayName: redact(location) };
  },
  async openOutputDir(location) {
    throw new StorageError(`Cannot write to ${redact(location)}: http(s) locations are read-only`, {
      location: redact(location),
    });
  },
};

registerStore("file", fileStore);
registerStore("http", httpStore);
registerStore("https", httpStore);
