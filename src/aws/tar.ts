/**
 * `model.tar.gz` for SageMaker: a POSIX ustar archive of a directory, files at the
 * archive root (SageMaker unpacks it into /opt/ml/model), gzip-compressed, streamed
 * file by file so a multi-GB checkpoint never sits in memory.
 */
import { createReadStream, createWriteStream } from "node:fs";
import { readdir, stat } from "node:fs/promises";
import * as path from "node:path";
import { Readable } from "node:stream";
import { pipeline } from "node:stream/promises";
import { constants, createGzip } from "node:zlib";
import { ConfigError, StorageError } from "../errors";

const BLOCK = 512;

interface Entry {
  /** Archive path with "/" separators; directories end with "/". */
  name: string;
  file: string;
  size: number;
  mode: number;
  mtime: number;
  dir: boolean;
}

/** Write `value` as a NUL-terminated octal field, or base-256 when it does not fit (GNU). */
function numeric(header: Buffer, offset: number, width: number, value: number) {
  const octal = value.toString(8);
  if (octal.length < width) {
    header.write(`${octal.padStart(width - 1, "0")}\0`, offset, width, "ascii");
    return;
  }
  // Base-256: the high bit of the first byte set, then the value big-endian.
  let v = BigInt(value);
  for (let i = width - 1; i > 0; i--) {
    header[offset + i] = Number(v & 0xffn);
    v >>= 8n;
  }
  header[offset] = 0x80;
}

/** Split a long path into ustar's prefix (155 bytes) and name (100 bytes) fields. */
function splitName(name: string): { prefix: string; name: string } {
  if (Buffer.byteLength(name) <= 100) return { prefix: "", name };
  for (let i = name.lastIndexOf("/", name.length - 2); i > 0; i = name.lastIndexOf("/", i - 1)) {
    const prefix = name.slice(0, i);
    const rest = name.slice(i + 1);
    if (Buffer.byteLength(prefix) <= 155 && Buffer.byteLength(rest) <= 100) {
      return { prefix, name: rest };
    }
  }
  throw new ConfigError(`Path too long for a tar archive: ${name}`, { name });
}

export function tarHeader(e: Omit<Entry, "file">): Buffer {
  const h = Buffer.alloc(BLOCK);
  const { prefix, name } = splitName(e.name);
  h.write(name, 0, 100, "utf8");
  numeric(h, 100, 8, e.mode);
  numeric(h, 108, 8, 0); // uid
  numeric(h, 116, 8, 0); // gid
  numeric(h, 124, 12, e.dir ? 0 : e.size);
  numeric(h, 136, 12, Math.floor(e.mtime));
  h.write("        ", 148, 8, "ascii"); // checksum counted as spaces
  h.write(e.dir ? "5" : "0", 156, 1, "ascii");
  h.write("ustar\0", 257, 6, "ascii");
  h.write("00", 263, 2, "ascii");
  h.write(prefix, 345, 155, "utf8");
  let sum = 0;
  for (const b of h) sum += b;
  h.write(`${sum.toString(8).padStart(6, "0")}\0 `, 148, 8, "ascii");
  return h;
}

async function entriesOf(dir: string): Promise<Entry[]> {
  const out: Entry[] = [];
  const walk = async (rel: string) => {
    const names = (await readdir(path.join(dir, rel))).sort();
    for (const n of names) {
      const r = rel ? `${rel}/${n}` : n;
      const file = path.join(dir, r);
      const st = await stat(file);
      const base = { file, mtime: st.mtimeMs / 1000 };
      if (st.isDirectory()) {
        out.push({ ...base, name: `${r}/`, size: 0, mode: 0o755, dir: true });
        await walk(r);
      } else if (st.isFile()) {
        out.push({ ...base, name: r, size: st.size, mode: 0o644, dir: false });
      }
    }
  };
  await walk("");
  return out;
}

async function* tarStream(entries: Entry[]): AsyncGenerator<Buffer> {
  for (const e of entries) {
    yield tarHeader(e);
    if (e.dir) continue;
    let n = 0;
    for await (const chunk of createReadStream(e.file, { highWaterMark: 1 << 20 })) {
      n += (chunk as Buffer).length;
      yield chunk as Buffer;
    }
    if (n !== e.size) {
      throw new StorageError(`${e.file} changed size while being archived (${e.size} -> ${n})`, {
        file: e.file,
      });
    }
    if (n % BLOCK) yield Buffer.alloc(BLOCK - (n % BLOCK));
  }
  yield Buffer.alloc(2 * BLOCK); // end of archive
}

export interface PackResult {
  /** Archive paths, in order. */
  entries: string[];
  /** Bytes of file content archived. */
  bytes: number;
}

/**
 * Pack the contents of `dir` (not `dir` itself) into a gzip-compressed tar at `outFile`.
 * Compression level 1 by default: safetensors weights barely compress, so higher levels
 * only cost time.
 */
export async function packDirectory(
  dir: string,
  outFile: string,
  options: { level?: number } = {},
): Promise<PackResult> {
  const entries = await entriesOf(dir);
  if (!entries.some((e) => !e.dir)) {
    throw new StorageError(`${dir} has no files to archive`, { dir });
  }
  await pipeline(
    Readable.from(tarStream(entries)),
    createGzip({ level: options.level ?? constants.Z_BEST_SPEED }),
    createWriteStream(outFile),
  );
  return {
    entries: entries.map((e) => e.name),
    bytes: entries.reduce((a, e) => a + e.size, 0),
  };
}
