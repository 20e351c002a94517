/**
 * The export's static server on a real port: files with their types and the
 * cross-origin isolation headers, GET/HEAD only, and no way out of the folder (`..`
 * raw or percent-encoded, backslashes, NUL, symbolic links, dot-files).
 */
import assert from "node:assert/strict";
import { mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { request } from "node:http";
import { tmpdir } from "node:os";
import * as path from "node:path";
import { after, before, test } from "node:test";
import { type StaticServer, startStaticServer } from "../../src/export/static-server";

const tmp = mkdtempSync(path.join(tmpdir(), "esmkit-static-"));
const root = path.join(tmp, "site");
const SECRET = "not for the browser";
let server: StaticServer;

before(async () => {
  mkdirSync(path.join(root, "sub"), { recursive: true });
  writeFileSync(path.join(root, "index.html"), "<p>page</p>");
  writeFileSync(path.join(root, "app.js"), "export {};");
  writeFileSync(path.join(root, "sub", "x.wasm"), Buffer.from([0, 97, 115, 109]));
  writeFileSync(path.join(root, ".hidden"), SECRET);
  writeFileSync(path.join(tmp, "secret.txt"), SECRET);
  symlinkSync(path.join(tmp, "secret.txt"), path.join(root, "link.txt"));
  symlinkSync(tmp, path.join(root, "up"));
  server = await startStaticServer({ root, port: 0 });
});
after(async () => {
  await server.close();
  rmSync(tmp, { recursive: true, force: true });
});

/** A raw request: the path goes out exactly as written (no client-side normalising). */
function get(
  rawPath: string,
  method = "GET",
): Promise<{ status: number; headers: Record<string, unknown>; body: string }> {
  return new Promise((resolve, reject) => {
    const req = request({ host: "127.0.0.1", port: server.port, path: rawPath, method }, (res) => {
      const chunks: Buffer[] = [];
      res.on("data", (c: Buffer) => chunks.push(c));
      res.on("end", () =>
        resolve({
          status: res.statusCode ?? 0,
          headers: res.headers,
          body: Buffer.concat(chunks).toString("utf8"),
        }),
      );
    });
    req.on("error", reject);
    req.end();
  });
}

test("serves files with their types and cross-origin isolation, on 127.0.0.1", async () => {
  assert.match(server.url, /^http:\/\/127\.0\.0\.1:\d+\/$/);
  const index = await get("/");
  assert.equal(index.status, 200);
  assert.equal(index.body, "<p>page</p>");
  assert.equal(index.headers["content-type"], "text/html; charset=utf-8");
  assert.equal(index.headers["cross-origin-opener-policy"], "same-origin");
  assert.equal(index.headers["cross-origin-embedder-policy"], "require-corp");
  assert.equal(
    (await get("/app.js?v=1")).headers["content-type"],
    "text/javascript; charset=utf-8",
  );
  const wasm = await get("/sub/x.wasm");
  assert.equal(wasm.headers["content-type"], "application/wasm");
  assert.equal(wasm.headers["content-length"], "4");
  const head = await get("/index.html", "HEAD");
  assert.equal(head.status, 200);
  assert.equal(head.body, "");
  assert.equal(head.headers["content-length"], "11");
  const post = await get("/index.html", "POST");
  assert.equal(post.status, 405);
  assert.equal(post.headers.allow, "GET, HEAD");
  assert.equal((await get("/missing.js")).status, 404);
  assert.equal((await get("/sub")).status, 404, "a folder is not a file");
});

test("no path leaves the folder", async () => {
  const attempts = [
    "/../secret.txt",
    "/sub/../../secret.txt",
    "/%2e%2e/secret.txt",
    "/%2E%2E%2Fsecret.txt",
    "/sub/..%2f..%2fsecret.txt",
    "/..%5csecret.txt",
    "/sub%5c..%5c..%5csecret.txt",
    "/index.html%00.js",
    "/%zz",
    "/link.txt",
    "/up/secret.txt",
    "/.hidden",
    "/sub/%2ehidden/../../.hidden",
    `/${tmp}/secret.txt`,
    "http://127.0.0.1/../secret.txt",
  ];
  for (const p of attempts) {
    const r = await get(p);
    assert.ok([400, 404].includes(r.status), `${p}: ${r.status}`);
    assert.ok(!r.body.includes(SECRET), `${p} leaked the file`);
  }
  assert.equal((await get("/../secret.txt")).status, 400);
  assert.equal((await get("/link.txt")).status, 404);
});
