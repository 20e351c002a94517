/**
 * Crash-safe checkpoint directories.
 *
 * Layout of `<root>/checkpoint-<step>/`: `tensors.bin` (float32 little-endian, tensors
 * back to back) and `manifest.json` (format, each tensor's name/shape/offset, the byte
 * total and the caller's JSON `state`).
 *
 * Atomicity: everything is written into `<dir>.tmp-<pid>`, fsynced (files, then the
 * directory), and renamed into place; the parent is fsynced after. A rename is atomic, so
 * a `checkpoint-<step>` directory is always complete and the previous checkpoint stays
 * until the new one exists: after a kill -9 at any moment `latestCheckpoint` finds a
 * loadable one. Overwriting a step moves the old directory to `<dir>.old-<pid>` first
 * (used as that step's checkpoint if the process dies before the swap ends); deletion
 * renames to `<dir>.del-<pid>` before removing, so a half-deleted directory is never
 * mistaken for a checkpoint.
 *
 * All functions are synchronous: a checkpoint is a barrier in the training loop anyway.
 */
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { ConfigError, StorageError, WeightsError } from "../errors";
import { isProcessAlive, ownedTemporary, trackTemporary } from "../util/temporaries";

export interface TensorRecord {
  shape: number[];
  data: Float32Array;
}

export interface CheckpointData {
  tensors: Record<string, TensorRecord>;
  /** Anything JSON-serialisable (trainer state, optimizer meta, RNG state, config). */
  state: unknown;
}

export interface CheckpointInfo {
  step: number;
  path: string;
}

const MANIFEST = "manifest.json";
const TENSORS = "tensors.bin";
const FORMAT = "esmkit-checkpoint";
const VERSION = 1;
/** Bytes per read/write call: below the 2 GiB limit of one fs call. */
const IO_CHUNK = 1 << 30;
const NAME_RE = /^checkpoint-(\d+)$/;
const OLD_RE = /^checkpoint-(\d+)\.old-\d+$/;

interface ManifestEntry {
  name: string;
  shape: number[];
  dtype: "float32";
  offset: number;
  byteLength: number;
}

interface Manifest {
  format: string;
  version: number;
  byteLength: number;
  tensors: ManifestEntry[];
  state: unknown;
}

function checkLittleEndian(): void {
  if (os.endianness() !== "LE") {
    throw new StorageError("Checkpoints are little-endian float32; this machine is big-endian");
  }
}

function fsyncPath(p: string): void {
  let fd: number | undefined;
  try {
    fd = fs.openSync(p, "r");
    fs.fsyncSync(fd);
  } catch (e) {
    // Some platforms cannot fsync a directory (EISDIR/EPERM/EINVAL); files are synced already.
    const code = (e as NodeJS.ErrnoException).code;
    if (!["EISDIR", "EPERM", "EINVAL", "EBADF"].includes(code ?? "")) throw e;
  } finally {
    if (fd !== undefined) fs.closeSync(fd);
  }
}

function writeAll(fd: number, bytes: Uint8Array, position: number): void {
  for (let done = 0; done < bytes.length; ) {
    const n = fs.writeSync(
      fd,
      bytes,
      done,
      Math.min(IO_CHUNK, bytes.length - done),
      position + done,
    );
    done += n;
  }
}

function readAll(fd: number, bytes: Uint8Array, position: number): void {
  for (let done = 0; done < bytes.length; ) {
    const n = fs.readSync(
      fd,
      bytes,
      done,
      Math.min(IO_CHUNK, bytes.length - done),
      position + done,
    );
    if (n === 0) throw new Error(`unexpected end of file at byte ${position + done}`);
    done += n;
  }
}

function numel(shape: readonly number[]): number {
  return shape.reduce((a, b) => a * b, 1);
}

/** `<root>/checkpoint-<step>` */
export function checkpointPath(root: string, step: number): string {
  return path.join(root, `checkpoint-${step}`);
}

/** Write a checkpoint directory atomically (replacing one at `dir` only once complete). */
export function writeCheckpoint(dir: string, data: CheckpointData): void {
  checkLittleEndian();
  const entries: ManifestEntry[] = [];
  let offset = 0;
  for (const [name, t] of Object.entries(data.tensors)) {
    if (!(t.data instanceof Float32Array) || t.data.length !== numel(t.shape)) {
      throw new ConfigError(
        `Tensor "${name}" for the checkpoint must be a Float32Array of ${numel(t.shape)} values (shape [${t.shape}]); got ${t.data?.constructor?.name} of ${t.data?.length}`,
        { name, shape: t.shape },
      );
    }
    entries.push({
      name,
      shape: [...t.shape],
      dtype: "float32",
      offset,
      byteLength: t.data.byteLength,
    });
    offset += t.data.byteLength;
  }
  const manifest: Manifest = {
    format: FORMAT,
    version: VERSION,
    byteLength: offset,
    tensors: entries,
    state: data.state,
  };
  const manifestText = JSON.stringify(manifest);

  const parent = path.dirname(path.resolve(dir));
  fs.mkdirSync(parent, { recursive: true });
  const tmp = ownedTemporary(dir);
  fs.rmSync(tmp, { recursive: true, force: true });
  fs.mkdirSync(tmp);
  const untrack = trackTemporary(tmp);
  try {
    const fd = fs.openSync(path.join(tmp, TENSORS), "w");
    try {
      for (const e of entries) {
        const t = data.tensors[e.name]!.data;
        writeAll(fd, new Uint8Array(t.buffer, t.byteOffset, t.byteLength), e.offset);
      }
      fs.fsyncSync(fd);
    } finally {
      fs.closeSync(fd);
    }
    const mfd = fs.openSync(path.join(tmp, MANIFEST), "w");
    try {
      fs.writeSync(mfd, manifestText);
      fs.fsyncSync(mfd);
    } finally {
      fs.closeSync(mfd);
    }
    fsyncPath(tmp);
    if (fs.existsSync(dir)) {
      const old = `${dir}.old-${process.pid}`;
      fs.rmSync(old, { recursive: true, force: true });
      fs.renameSync(dir, old);
      fs.renameSync(tmp, dir);
      fsyncPath(parent);
      fs.rmSync(old, { recursive: true, force: true });
    } else {
      fs.renameSync(tmp, dir);
    }
    fsyncPath(parent);
  } catch (e) {
    fs.rmSync(tmp, { recursive: true, force: true });
    throw new StorageError(
      `Could not write checkpoint ${dir}: ${(e as Error).message}`,
      { dir },
      { cause: e },
    );
  } finally {
    untrack();
  }
}

function readManifest(dir: string): Manifest {
  const m = JSON.parse(fs.readFileSync(path.join(dir, MANIFEST), "utf8")) as Manifest;
  if (m.format !== FORMAT || m.version !== VERSION || !Array.isArray(m.tensors)) {
    throw new Error(
      `not an ${FORMAT} v${VERSION} manifest (format ${m.format}, version ${m.version})`,
    );
  }
  return m;
}

/** Whether `dir` holds a complete checkpoint (manifest parses, tensor file has every byte). */
export function isCompleteCheckpoint(dir: string): boolean {
  try {
    const m = readManifest(dir);
    return fs.statSync(path.join(dir, TENSORS)).size === m.byteLength;
  } catch {
    return false;
  }
}

export function readCheckpoint(dir: string): CheckpointData {
  checkLittleEndian();
  let manifest: Manifest;
  try {
    manifest = readManifest(dir);
  } catch (e) {
    throw new WeightsError(
      `Cannot read checkpoint ${dir}: ${(e as Error).message}`,
      { dir },
      { cause: e },
    );
  }
  const file = path.join(dir, TENSORS);
  const tensors: Record<string, TensorRecord> = {};
  let fd: number | undefined;
  try {
    fd = fs.openSync(file, "r");
    const size = fs.fstatSync(fd).size;
    if (size !== manifest.byteLength) {
      throw new Error(`${TENSORS} has ${size} bytes; the manifest lists ${manifest.byteLength}`);
    }
    for (const e of manifest.tensors) {
      if (e.dtype !== "float32" || e.byteLength !== numel(e.shape) * 4) {
        throw new Error(
          `tensor "${e.name}" has dtype ${e.dtype}, ${e.byteLength} bytes for [${e.shape}]`,
        );
      }
      const data = new Float32Array(numel(e.shape));
      readAll(fd, new Uint8Array(data.buffer), e.offset);
      tensors[e.name] = { shape: e.shape, data };
    }
  } catch (e) {
    throw new WeightsError(
      `Cannot read checkpoint ${dir}: ${(e as Error).message}`,
      { dir },
      { cause: e },
    );
  } finally {
    if (fd !== undefined) fs.closeSync(fd);
  }
  return { tensors, state: manifest.state };
}

/**
 * Complete checkpoints under `root`, oldest step first. Temporary (`.tmp-*`) and
 * half-deleted (`.del-*`) directories are ignored; `.old-*` stands in for its step only
 * when the process died while swapping it out.
 */
export function listCheckpoints(root: string): CheckpointInfo[] {
  let names: string[];
  try {
    names = fs.readdirSync(root);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === "ENOENT") return [];
    throw e;
  }
  const found = new Map<number, string>();
  const fallbacks = new Map<number, string>();
  for (const name of names) {
    const main = NAME_RE.exec(name);
    const old = OLD_RE.exec(name);
    const full = path.join(root, name);
    if (main && isCompleteCheckpoint(full)) found.set(Number(main[1]), full);
    else if (old && isCompleteCheckpoint(full)) fallbacks.set(Number(old[1]), full);
  }
  for (const [step, p] of fallbacks) if (!found.has(step)) found.set(step, p);
  return [...found].map(([step, p]) => ({ step, path: p })).sort((a, b) => a.step - b.step);
}

/** The complete checkpoint with the highest step, if any. */
export function latestCheckpoint(root: string): CheckpointInfo | undefined {
  return listCheckpoints(root).at(-1);
}

function removeDir(dir: string): void {
  const doomed = `${dir}.del-${process.pid}`;
  fs.renameSync(dir, doomed);
  fs.rmSync(doomed, { recursive: true, force: true });
}

/**
 * Keep the newest `keep` checkpoints (HF `save_total_limit`) plus any step in `protect`
 * (e.g. the best one); remove the rest. Returns the removed paths.
 */
export function pruneCheckpoints(
  root: string,
  keep: number,
  options: { protect?: readonly number[] } = {},
): string[] {
  if (!(Number.isInteger(keep) && keep >= 1)) {
    throw new ConfigError(`saveTotalLimit ${keep} is invalid; expected an integer >= 1`, { keep });
  }
  const protect = new Set(options.protect ?? []);
  const all = listCheckpoints(root);
  const removed: string[] = [];
  for (const c of all.slice(0, Math.max(0, all.length - keep))) {
    if (protect.has(c.step)) continue;
    removeDir(c.path);
    removed.push(c.path);
  }
  return removed;
}

/** Write `<root>/checkpoint-<step>` and, with `saveTotalLimit`, prune older ones. */
export function saveCheckpoint(
  root: string,
  step: number,
  data: CheckpointData,
  options: { saveTotalLimit?: number; protect?: readonly number[] } = {},
): CheckpointInfo {
  if (!(Number.isInteger(step) && step >= 0)) {
    throw new ConfigError(`Checkpoint step ${step} is invalid; expected an integer >= 0`, { step });
  }
  const dir = checkpointPath(root, step);
  writeCheckpoint(dir, data);
  if (options.saveTotalLimit !== undefined) {
    pruneCheckpoints(root, options.saveTotalLimit, { protect: [...(options.protect ?? []), step] });
  }
  return { step, path: dir };
}

/**
 * Remove leftovers of interrupted writes under `root`: `.tmp-<pid>` and `.del-<pid>` of
 * processes no longer running, and `.old-*` whose step has a complete checkpoint again.
 * Returns the removed paths. (The run folder's lock keeps other writers out meanwhile.)
 */
export function removeStaleTemporaries(root: string): string[] {
  if (!fs.existsSync(root)) return [];
  const removed: string[] = [];
  for (const name of fs.readdirSync(root)) {
    const full = path.join(root, name);
    const dead = /^checkpoint-\d+\.(?:tmp|del)-(\d+)$/.exec(name);
    const old = /^(checkpoint-\d+)\.old-\d+$/.exec(name);
    const stale =
      (dead && !isProcessAlive(Number(dead[1]))) ||
      (old && isCompleteCheckpoint(path.join(root, old[1]!)));
    if (stale) {
      fs.rmSync(full, { recursive: true, force: true });
      removed.push(full);
    }
  }
  return removed;
}
