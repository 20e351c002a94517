/**
 * A model file and its external data file in a private temporary folder, for an
 * onnxruntime session whose initializers are large (the int8 codes of a quantized base).
 *
 * Why: handed model bytes, onnxruntime parses them into its own protobuf copy and then
 * copies every initializer out of it, while JavaScript still holds the bytes and the
 * arrays they were made of; the freed copies stay in the process's heap. Loading a model
 * file whose initializers sit in an external data file instead, onnxruntime maps that
 * file into memory and reads each tensor from it (pre-packing what its kernels pack), and
 * the bytes are written one tensor at a time, so JavaScript never holds them all. At
 * 650M parameters this took the int8 predictor from 2.5 GB resident after load to the
 * figure in bench/results/issue-13/README.md.
 *
 * The folder is `<tmpdir>/esmkit-session.tmp-<pid>-<random>` (`TMPDIR` picks tmpdir): it
 * is removed as soon as the session is made (onnxruntime keeps what it mapped; a mapped
 * file outlives its name on Linux and macOS), on exit, and, if the process was killed
 * before that, by the next process that makes one (src/util/temporaries.ts).
 */
import { closeSync, mkdtempSync, openSync, rmSync, writeFileSync, writeSync } from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { ownedTemporary, removeDeadTemporaries, trackTemporary } from "../util/temporaries";
import type { ExternalRef } from "./proto";

const BASE = "esmkit-session";
const DATA = "weights.bin";
const MODEL = "model.onnx";
/** Each tensor starts on a page boundary, which lets onnxruntime map it. */
const ALIGN = 4096;

export class SessionFiles {
  readonly dir: string;
  private fd: number | undefined;
  private end = 0;
  private readonly untrack: () => void;

  constructor(tmp: string = os.tmpdir()) {
    removeDeadTemporaries(tmp, BASE);
    this.dir = mkdtempSync(`${ownedTemporary(path.join(tmp, BASE))}-`);
    this.untrack = trackTemporary(this.dir);
    this.fd = openSync(path.join(this.dir, DATA), "w");
  }

  /** Writes `bytes` to the data file; returns where they are, for the model file. */
  append(bytes: Uint8Array): ExternalRef {
    if (this.fd === undefined) throw new Error("SessionFiles: the data file is closed");
    const offset = Math.ceil(this.end / ALIGN) * ALIGN;
    let done = 0;
    while (done < bytes.length) {
      done += writeSync(this.fd, bytes, done, bytes.length - done, offset + done);
    }
    this.end = offset + bytes.length;
    return { location: DATA, offset, length: bytes.length };
  }

  /** Bytes written to the data file so far (with alignment gaps). */
  get dataBytes(): number {
    return this.end;
  }

  /** Closes the data file, writes the model file beside it, and returns its path. */
  model(bytes: Uint8Array): string {
    this.closeData();
    const p = path.join(this.dir, MODEL);
    writeFileSync(p, bytes);
    return p;
  }

  /** Removes the folder (an open session keeps what it mapped). */
  remove(): void {
    this.closeData();
    try {
      rmSync(this.dir, { recursive: true, force: true });
      this.untrack();
    } catch {
      // Windows cannot remove a mapped file: removed on exit, or by the next process.
    }
  }

  private closeData(): void {
    if (this.fd === undefined) return;
    closeSync(this.fd);
    this.fd = undefined;
  }
}
