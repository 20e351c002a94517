/**
 * The ESM-2 tokenizer, token for token the same as Hugging Face `EsmTokenizer`
 * (transformers 5.x, the slow Python tokenizer every ESM-2 checkpoint uses):
 *
 * 1. every vocabulary entry is a "no split" token: the text is scanned left to right
 *    and each vocabulary token found is emitted (multi-character ones such as
 *    `<mask>` win over single letters);
 * 2. what lies between them is split on whitespace (Python's `str.split()`), and each
 *    remaining chunk becomes ONE `<unk>` ("JJJ" -> one `<unk>`, "a b" -> two);
 * 3. no lowercasing: "a" is unknown, as in Python;
 * 4. `<cls>` + tokens + `<eos>`; truncation keeps the first `maxLength - 2` tokens;
 *    padding is on the right with `<pad>` and attention mask 0.
 */
import { mkdir, readFile, writeFile } from "node:fs/promises";
import * as path from "node:path";
import { TokenizerError } from "../errors";

/** The vocabulary every facebook/esm2_* checkpoint ships, in id order. */
export const ESM2_VOCAB: readonly string[] = [
  "<cls>",
  "<pad>",
  "<eos>",
  "<unk>",
  ..."LAGVSERTIDPKQNFYMHWCXBUZO.-",
  "<null_1>",
  "<mask>",
];

export interface SpecialTokens {
  cls: string;
  pad: string;
  eos: string;
  unk: string;
  mask: string;
}

const DEFAULT_SPECIALS: SpecialTokens = {
  cls: "<cls>",
  pad: "<pad>",
  eos: "<eos>",
  unk: "<unk>",
  mask: "<mask>",
};

export type Padding = "longest" | "max_length" | false;

export interface EncodeOptions {
  /** Cut to this many ids, special tokens included (needs `truncation`). */
  maxLength?: number;
  /** Keep the first `maxLength - 2` residues (default: true when maxLength is set). */
  truncation?: boolean;
  /** Add `<cls>` and `<eos>` (default true). */
  addSpecialTokens?: boolean;
}

export interface BatchEncodeOptions extends EncodeOptions {
  /** "longest" (default) pads to the longest row, "max_length" to `maxLength`. */
  padding?: Padding;
}

export interface BatchEncoding {
  inputIds: number[][];
  attentionMask: number[][];
}

/** Characters Python's `str.isspace()` accepts (what `str.split()` splits on). */
function isPythonSpace(code: number): boolean {
  return (
    (code >= 0x09 && code <= 0x0d) ||
    (code >= 0x1c && code <= 0x20) ||
    code === 0x85 ||
    code === 0xa0 ||
    code === 0x1680 ||
    (code >= 0x2000 && code <= 0x200a) ||
    code === 0x2028 ||
    code === 0x2029 ||
    code === 0x202f ||
    code === 0x205f ||
    code === 0x3000
  );
}

export class EsmTokenizer {
  readonly vocab: readonly string[];
  readonly specials: SpecialTokens;
  readonly clsId: number;
  readonly padId: number;
  readonly eosId: number;
  readonly unkId: number;
  readonly maskId: number;
  /** `model_max_length` from tokenizer_config.json, when it is a real limit. */
  readonly modelMaxLength: number | undefined;
  private readonly tokenToId: Map<string, number>;
  /** Single-UTF-16-unit tokens by char code, -1 when absent: the hot path. */
  private readonly charIds: Int16Array;
  /** Multi-character tokens, longest first. */
  private readonly longTokens: string[];

  constructor(
    vocab: readonly string[] = ESM2_VOCAB,
    specials: Partial<SpecialTokens> = {},
    modelMaxLength?: number,
  ) {
    if (vocab.length === 0) throw new TokenizerError("The vocabulary is empty", {});
    this.vocab = [...vocab];
    this.specials = { ...DEFAULT_SPECIALS, ...specials };
    this.modelMaxLength = modelMaxLength;
    this.tokenToId = new Map();
    this.vocab.forEach((t, i) => {
      if (!this.tokenToId.has(t)) this.tokenToId.set(t, i);
    });
    const idOf = (role: keyof SpecialTokens) => {
      const tok = this.specials[role];
      const id = this.tokenToId.get(tok);
      if (id === undefined) {
        throw new TokenizerError(
          `The ${role} token "${tok}" is not in the vocabulary (${this.vocab.length} tokens: ${this.vocab.slice(0, 8).join(" ")} ...)`,
          { role, token: tok },
        );
      }
      return id;
    };
    this.clsId = idOf("cls");
    this.padId = idOf("pad");
    this.eosId = idOf("eos");
    this.unkId = idOf("unk");
    this.maskId = idOf("mask");
    this.charIds = new Int16Array(65536).fill(-1);
    this.longTokens = [];
    for (const [t, id] of this.tokenToId) {
      if (t.length === 1) this.charIds[t.charCodeAt(0)] = id;
      else if (t.length > 1) this.longTokens.push(t);
    }
    this.longTokens.sort((a, b) => b.length - a.length);
  }

  get vocabSize(): number {
    return this.vocab.length;
  }

  /** Load `vocab.txt` (+ `tokenizer_config.json` / `special_tokens_map.json` when present). */
  static async fromDirectory(dir: string): Promise<EsmTokenizer> {
    let vocabText: string;
    try {
      vocabText = await readFile(path.join(dir, "vocab.txt"), "utf8");
    } catch (e) {
      throw new TokenizerError(
        `No vocab.txt in ${dir}: an ESM-2 tokenizer needs one`,
        { dir },
        {
          cause: e,
        },
      );
    }
    // Python reads the file with splitlines() and strips each line.
    const vocab = vocabText.split(/\r\n|\r|\n/).map((l) => l.trim());
    if (vocab.length > 0 && vocab[vocab.length - 1] === "" && vocabText.endsWith("\n")) vocab.pop();
    const specials: Partial<SpecialTokens> = {};
    let modelMaxLength: number | undefined;
    for (const file of ["special_tokens_map.json", "tokenizer_config.json"]) {
      const json = await readJsonIfPresent(path.join(dir, file));
      if (!json) continue;
      for (const role of Object.keys(DEFAULT_SPECIALS) as (keyof SpecialTokens)[]) {
        const v = json[`${role}_token`];
        const content =
          typeof v === "string" ? v : (v as { content?: unknown } | undefined)?.content;
        if (typeof content === "string") specials[role] = content;
      }
      const mml = json.model_max_length;
      if (typeof mml === "number" && mml < 1e12) modelMaxLength = mml;
    }
    return new EsmTokenizer(vocab, specials, modelMaxLength);
  }

  /** Split text into vocabulary tokens (unknown runs as their raw text, like Python). */
  tokenize(text: string): string[] {
    const out: string[] = [];
    this.scan(text, (id, raw) => {
      out.push(id === this.unkId && raw !== this.specials.unk ? raw : this.vocab[id]!);
    });
    return out;
  }

  /** Token ids for one sequence. */
  encode(text: string, options: EncodeOptions = {}): number[] {
    const ids: number[] = [];
    this.scan(text, (id) => ids.push(id));
    const addSpecial = options.addSpecialTokens ?? true;
    const truncate = options.truncation ?? options.maxLength !== undefined;
    if (options.maxLength !== undefined) checkMaxLength(options.maxLength, addSpecial);
    if (truncate && options.maxLength !== undefined) {
      const room = options.maxLength - (addSpecial ? 2 : 0);
      if (ids.length > room) ids.length = room;
    }
    return addSpecial ? [this.clsId, ...ids, this.eosId] : ids;
  }

  /** Encode many sequences with right padding and attention masks. */
  encodeBatch(texts: readonly string[], options: BatchEncodeOptions = {}): BatchEncoding {
    const padding = options.padding ?? "longest";
    const rows = texts.map((t) => this.encode(t, options));
    let width = 0;
    if (padding === "max_length") {
      if (options.maxLength === undefined) {
        throw new TokenizerError('padding "max_length" needs maxLength', { padding });
      }
      width = options.maxLength;
    } else if (padding === "longest") {
      for (const r of rows) width = Math.max(width, r.length);
    }
    const attentionMask = rows.map((r) => {
      const m = new Array<number>(Math.max(width, r.length)).fill(0);
      m.fill(1, 0, r.length);
      return padding === false ? m.slice(0, r.length) : m;
    });
    const inputIds = rows.map((r) => {
      if (padding === false || r.length >= width) return r;
      return r.concat(new Array<number>(width - r.length).fill(this.padId));
    });
    return { inputIds, attentionMask };
  }

  /** Ids back to text, tokens joined by spaces as Python's decode does. */
  decode(ids: readonly number[], options: { skipSpecialTokens?: boolean } = {}): string {
    const special = new Set([this.clsId, this.padId, this.eosId, this.unkId, this.maskId]);
    const out: string[] = [];
    for (const id of ids) {
      if (options.skipSpecialTokens && special.has(id)) continue;
      out.push(this.vocab[id] ?? this.specials.unk);
    }
    return out.join(" ");
  }

  /** Does the text contain anything that would become `<unk>`? Returns the first offender. */
  firstUnknown(text: string): { index: number; char: string } | undefined {
    let found: { index: number; char: string } | undefined;
    this.scan(text, (id, raw, at) => {
      if (found === undefined && id === this.unkId && raw !== this.specials.unk) {
        found = { index: at, char: String.fromCodePoint(raw.codePointAt(0)!) };
      }
    });
    return found;
  }

  /**
   * Walk the text, calling `emit(id, rawText, offset)` for each token, following the
   * three rules in the file comment.
   */
  private scan(text: string, emit: (id: number, raw: string, at: number) => void): void {
    const n = text.length;
    let chunkStart = -1; // start of the current unknown chunk, -1 when none
    const flush = (end: number) => {
      if (chunkStart >= 0) emit(this.unkId, text.slice(chunkStart, end), chunkStart);
      chunkStart = -1;
    };
    let i = 0;
    while (i < n) {
      const code = text.charCodeAt(i);
      const single = this.charIds[code]!;
      if (single >= 0) {
        flush(i);
        emit(single, text[i]!, i);
        i += 1;
        continue;
      }
      let long: string | undefined;
      for (const t of this.longTokens) {
        if (text.startsWith(t, i)) {
          long = t;
          break;
        }
      }
      if (long !== undefined) {
        flush(i);
        emit(this.tokenToId.get(long)!, long, i);
        i += long.length;
        continue;
      }
      if (isPythonSpace(code)) {
        flush(i);
      } else if (chunkStart < 0) {
        chunkStart = i;
      }
      i += 1;
    }
    flush(n);
  }

  /** Hugging Face files: vocab.txt, tokenizer_config.json, special_tokens_map.json, tokenizer.json. */
  async save(dir: string): Promise<string[]> {
    await mkdir(dir, { recursive: true });
    const files: Record<string, string> = {
      "vocab.txt": this.vocab.join("\n"),
      "tokenizer_config.json": `${JSON.stringify(this.tokenizerConfig(), null, 2)}\n`,
      "special_tokens_map.json": `${JSON.stringify(this.specialTokensMap(), null, 2)}\n`,
      "tokenizer.json": `${JSON.stringify(this.tokenizerJson(), null, 2)}\n`,
    };
    for (const [name, body] of Object.entries(files)) {
      await writeFile(path.join(dir, name), body, "utf8");
    }
    return Object.keys(files);
  }

  private specialIds(): [string, number][] {
    return (["cls", "pad", "eos", "unk", "mask"] as const).map((r) => [
      this.specials[r],
      this.tokenToId.get(this.specials[r])!,
    ]);
  }

  specialTokensMap(): Record<string, string> {
    return {
      cls_token: this.specials.cls,
      eos_token: this.specials.eos,
      mask_token: this.specials.mask,
      pad_token: this.specials.pad,
      unk_token: this.specials.unk,
    };
  }

  tokenizerConfig(): Record<string, unknown> {
    const decoder: Record<string, unknown> = {};
    for (const [content, id] of this.specialIds()) {
      decoder[String(id)] = addedToken(content, true);
    }
    return {
      added_tokens_decoder: decoder,
      clean_up_tokenization_spaces: false,
      ...this.specialTokensMap(),
      model_max_length: this.modelMaxLength ?? 1024,
      tokenizer_class: "EsmTokenizer",
    };
  }

  /**
   * A `tokenizer.json` (the `tokenizers` format) that reproduces the rules above in
   * libraries that need one (transformers.js has no vocab.txt loader for ESM):
   * every vocabulary entry is an added token, so it splits first; leftovers are split
   * on whitespace, and the WordPiece model maps each leftover word to ONE `<unk>`,
   * since no leftover can contain a vocabulary entry.
   */
  tokenizerJson(): Record<string, unknown> {
    const special = new Set(this.specialIds().map(([c]) => c));
    const vocab: Record<string, number> = {};
    this.vocab.forEach((t, i) => {
      if (!(t in vocab)) vocab[t] = i;
    });
    const tokenRef = (t: string) => ({ id: t, ids: [this.tokenToId.get(t)!], tokens: [t] });
    return {
      version: "1.0",
      truncation: null,
      padding: null,
      added_tokens: this.vocab.map((t, i) => ({ id: i, ...addedToken(t, special.has(t)) })),
      normalizer: null,
      pre_tokenizer: { type: "WhitespaceSplit" },
      post_processor: {
        type: "TemplateProcessing",
        single: [
          { SpecialToken: { id: this.specials.cls, type_id: 0 } },
          { Sequence: { id: "A", type_id: 0 } },
          { SpecialToken: { id: this.specials.eos, type_id: 0 } },
        ],
        pair: [
          { SpecialToken: { id: this.specials.cls, type_id: 0 } },
          { Sequence: { id: "A", type_id: 0 } },
          { SpecialToken: { id: this.specials.eos, type_id: 0 } },
          { Sequence: { id: "B", type_id: 0 } },
          { SpecialToken: { id: this.specials.eos, type_id: 0 } },
        ],
        special_tokens: {
          [this.specials.cls]: tokenRef(this.specials.cls),
          [this.specials.eos]: tokenRef(this.specials.eos),
        },
      },
      decoder: null,
      model: {
        type: "WordPiece",
        unk_token: this.specials.unk,
        continuing_subword_prefix: "##",
        max_input_chars_per_word: 100,
        vocab,
      },
    };
  }
}

function addedToken(content: string, special: boolean): Record<string, unknown> {
  return {
    content,
    single_word: false,
    lstrip: false,
    rstrip: false,
    normalized: false,
    special,
  };
}

function checkMaxLength(maxLength: number, addSpecial: boolean): void {
  const min = addSpecial ? 2 : 0;
  if (!Number.isInteger(maxLength) || maxLength < min) {
    throw new TokenizerError(
      `maxLength must be an integer >= ${min} (room for <cls> and <eos>), got ${maxLength}`,
      { maxLength },
    );
  }
}

async function readJsonIfPresent(file: string): Promise<Record<string, unknown> | undefined> {
  let text: string;
  try {
    text = await readFile(file, "utf8");
  } catch {
    return undefined;
  }
  try {
    return JSON.parse(text) as Record<string, unknown>;
  } catch (e) {
    throw new TokenizerError(
      `${file} is not valid JSON: ${(e as Error).message}`,
      { file },
      {
        cause: e,
      },
    );
  }
}
