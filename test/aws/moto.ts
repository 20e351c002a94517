/**
 * moto's server (S3, the SageMaker control plane and runtime) on a free loopback port,
 * behind a recording proxy: the clients talk to the proxy, which forwards each request
 * to moto and keeps its method, path, headers and body, so tests can check what was
 * actually sent. Started by the tests; skipped with a reason when `.venv/bin/moto_server`
 * is missing outside CI, a failure under CI (`.ci/run` installs it).
 */
import { type ChildProcess, spawn } from "node:child_process";
import { existsSync } from "node:fs";
import { createServer, request, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import * as path from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { REPO_ROOT } from "../helpers/python";

export const MOTO_SERVER = path.join(REPO_ROOT, ".venv", "bin", "moto_server");
export const FAKE_KEY_ID = "AKIAFAKEKEY1234567890";
export const FAKE_SECRET = "fakeSecretKeyDoNotLog0123456789abcdefGHIJ";

export interface RecordedRequest {
  method: string;
  path: string;
  headers: Record<string, string | string[] | undefined>;
  body: Buffer;
  /** X-Amz-Target of JSON protocol calls, e.g. "SageMaker.CreateTrainingJob". */
  target?: string;
}

export interface Moto {
  /** The proxy's URL: what AWS_ENDPOINT_URL is set to. */
  endpoint: string;
  /** moto itself (for its /moto-api). */
  motoUrl: string;
  requests: RecordedRequest[];
  /** Requests with this X-Amz-Target, bodies parsed as JSON. */
  calls(target: string): Record<string, unknown>[];
  stop(): Promise<void>;
}

/** Why the AWS tests cannot run here, or undefined; throws under CI. */
export function motoSkipReason(): string | undefined {
  if (existsSync(MOTO_SERVER)) return undefined;
  const reason = `${MOTO_SERVER} is missing (run .ci/run, or pip install 'moto[server]' into .venv)`;
  if (process.env.CI) throw new Error(`moto is required under CI: ${reason}`);
  return reason;
}

async function freePort(): Promise<number> {
  const s = createServer();
  await new Promise<void>((r) => s.listen(0, "127.0.0.1", r));
  const { port } = s.address() as AddressInfo;
  await new Promise((r) => s.close(r));
  return port;
}

async function waitUp(url: string, child: ChildProcess, log: () => string): Promise<void> {
  const deadline = Date.now() + 30_000;
  while (Date.now() < deadline) {
    if (child.exitCode !== null) throw new Error(`moto_server exited early:\n${log()}`);
    try {
      const res = await fetch(`${url}/moto-api/`);
      await res.arrayBuffer();
      if (res.ok) return;
    } catch {
      // not listening yet
    }
    await sleep(100);
  }
  throw new Error(`moto_server did not answer within 30 s:\n${log()}`);
}

function proxy(target: number, requests: RecordedRequest[]): Server {
  return createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on("data", (c: Buffer) => chunks.push(c));
    req.on("end", () => {
      const body = Buffer.concat(chunks);
      const target_ = req.headers["x-amz-target"];
      requests.push({
        method: req.method ?? "",
        path: req.url ?? "",
        headers: { ...req.headers },
        body,
        target: typeof target_ === "string" ? target_ : undefined,
      });
      const up = request(
        {
          host: "127.0.0.1",
          port: target,
          method: req.method,
          path: req.url,
          headers: { ...req.headers, host: `127.0.0.1:${target}` },
        },
        (upRes) => {
          res.writeHead(upRes.statusCode ?? 502, upRes.headers);
          upRes.pipe(res);
        },
      );
      up.on("error", (e) => {
        res.writeHead(502);
        res.end(String(e));
      });
      up.end(body);
    });
  });
}

/** Start moto and the proxy, and point the AWS SDK at them with fake credentials. */
export async function startMoto(): Promise<Moto> {
  const port = await freePort();
  let output = "";
  const child = spawn(MOTO_SERVER, ["-H", "127.0.0.1", "-p", String(port)], {
    stdio: ["ignore", "pipe", "pipe"],
  });
  child.stdout!.on("data", (d) => {
    output += d;
  });
  child.stderr!.on("data", (d) => {
    output += d;
  });
  const motoUrl = `http://127.0.0.1:${port}`;
  try {
    await waitUp(motoUrl, child, () => output);
  } catch (e) {
    child.kill("SIGKILL");
    throw e;
  }
  const requests: RecordedRequest[] = [];
  const server = proxy(port, requests);
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  const endpoint = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  Object.assign(process.env, {
    AWS_ACCESS_KEY_ID: FAKE_KEY_ID,
    AWS_SECRET_ACCESS_KEY: FAKE_SECRET,
    AWS_REGION: "us-east-1",
    AWS_ENDPOINT_URL: endpoint,
  });
  delete process.env.AWS_PROFILE;
  delete process.env.AWS_SESSION_TOKEN;
  return {
    endpoint,
    motoUrl,
    requests,
    calls(target) {
      return requests
        .filter((r) => r.target === target)
        .map((r) => JSON.parse(r.body.toString("utf8")) as Record<string, unknown>);
    },
    async stop() {
      server.closeAllConnections();
      await new Promise((r) => server.close(r));
      if (child.exitCode === null) {
        child.kill("SIGTERM");
        await Promise.race([
          new Promise((r) => child.once("exit", r)),
          sleep(3000).then(() => child.kill("SIGKILL")),
        ]);
      }
    },
  };
}

/** Queue canned InvokeEndpoint answers in moto (it never runs a container). */
export async function queueEndpointResults(
  moto: Moto,
  results: { Body: string; ContentType: string }[],
): Promise<void> {
  const res = await fetch(`${moto.motoUrl}/moto-api/static/sagemaker/endpoint-results`, {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify({
      results: results.map((r) => ({ ...r, InvokedProductionVariant: "AllTraffic" })),
    }),
  });
  if (!res.ok) throw new Error(`moto endpoint-results: HTTP ${res.status} ${await res.text()}`);
}

/** The environment for a CLI child process talking to moto. */
export function cliEnv(moto: Moto, extra: Record<string, string> = {}): NodeJS.ProcessEnv {
  return {
    ...process.env,
    AWS_ACCESS_KEY_ID: FAKE_KEY_ID,
    AWS_SECRET_ACCESS_KEY: FAKE_SECRET,
    AWS_REGION: "us-east-1",
    AWS_ENDPOINT_URL: moto.endpoint,
    ...extra,
  };
}
