/**
 * A small static file server for an export folder (`esmkit export --serve`): GET and
 * HEAD only, on 127.0.0.1. Every request path is decoded once and checked: no `..`
 * segments, no NUL or backslash, no dot-files, and the file's real path (symbolic links
 * resolved) must lie inside the folder; anything else is 400 or 404 and never read.
 * Pages are cross-origin isolated (COOP/COEP), which lets onnxruntime-web use threads.
 */
import { createReadStream, promises as fsp } from "node:fs";
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import * as path from "node:path";
import { ConfigError } from "../errors";

const TYPES: Record<string, string> = {
  ".html": "text/html; charset=utf-8",
  ".js": "text/javascript; charset=utf-8",
  ".mjs": "text/javascript; charset=utf-8",
  ".json": "application/json; charset=utf-8",
  ".wasm": "application/wasm",
  ".txt": "text/plain; charset=utf-8",
  ".css": "text/css; charset=utf-8",
  ".svg": "image/svg+xml",
  ".png": "image/png",
};

export interface StaticServerOptions {
  /** The folder to serve. */
  root: string;
  /** Default 0 (any free port). */
  port?: number;
  /** Default 127.0.0.1. */
  host?: string;
}

export interface StaticServer {
  /** `http://host:port/`. */
  url: string;
  port: number;
  server: Server;
  close(): Promise<void>;
}

/** The file a URL path names inside `root`, or an HTTP status explaining why not. */
export async function resolveRequestPath(
  root: string,
  urlPath: string,
): Promise<{ file: string } | { status: 400 | 404 }> {
  let decoded: string;
  try {
    decoded = decodeURIComponent(urlPath);
  } catch {
    return { status: 400 };
  }
  if (!decoded.startsWith("/") || decoded.includes("\0") || decoded.includes("\\")) {
    return { status: 400 };
  }
  const segments = decoded.split("/").filter((s) => s !== "");
  if (segments.some((s) => s === ".." || s === ".")) return { status: 400 };
  if (segments.some((s) => s.startsWith("."))) return { status: 404 };
  if (decoded.endsWith("/")) segments.push("index.html");
  const realRoot = await fsp.realpath(root);
  const candidate = path.join(realRoot, ...segments);
  let real: string;
  try {
    real = await fsp.realpath(candidate);
  } catch {
    return { status: 404 };
  }
  const rel = path.relative(realRoot, real);
  if (rel === "" || rel.startsWith("..") || path.isAbsolute(rel)) return { status: 404 };
  const st = await fsp.stat(real).catch(() => undefined);
  if (!st?.isFile()) return { status: 404 };
  return { file: real };
}

/** Serves `root` until `close()`. */
export async function startStaticServer(options: StaticServerOptions): Promise<StaticServer> {
  const root = path.resolve(options.root);
  const st = await fsp.stat(root).catch(() => undefined);
  if (!st?.isDirectory()) {
    throw new ConfigError(`Cannot serve ${root}: not a directory`, { root });
  }
  const host = options.host ?? "127.0.0.1";
  const server = createServer((req, res) => {
    const send = (status: number, text: string, headers: Record<string, string> = {}) => {
      res.writeHead(status, { "Content-Type": "text/plain; charset=utf-8", ...headers });
      res.end(req.method === "HEAD" ? undefined : `${text}\n`);
    };
    if (req.method !== "GET" && req.method !== "HEAD") {
      send(405, "Method not allowed", { Allow: "GET, HEAD" });
      return;
    }
    const raw = req.url ?? "/";
    const pathname = raw.split("?")[0]!.split("#")[0]!;
    resolveRequestPath(root, pathname)
      .then(async (r) => {
        if ("status" in r) {
          send(r.status, r.status === 400 ? "Bad request path" : "Not found");
          return;
        }
        const size = (await fsp.stat(r.file)).size;
        res.writeHead(200, {
          "Content-Type": TYPES[path.extname(r.file).toLowerCase()] ?? "application/octet-stream",
          "Content-Length": String(size),
          "Cache-Control": "no-cache",
          "X-Content-Type-Options": "nosniff",
          "Cross-Origin-Opener-Policy": "same-origin",
          "Cross-Origin-Embedder-Policy": "require-corp",
          "Cross-Origin-Resource-Policy": "same-origin",
        });
        if (req.method === "HEAD") {
          res.end();
          return;
        }
        const stream = createReadStream(r.file);
        stream.on("error", () => res.destroy());
        stream.pipe(res);
      })
      .catch(() => {
        if (!res.headersSent) send(500, "Internal error");
        else res.destroy();
      });
  });
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(options.port ?? 0, host, () => {
      server.off("error", reject);
      resolve();
    });
  });
  const port = (server.address() as AddressInfo).port;
  return {
    url: `http://${host}:${port}/`,
    port,
    server,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}
