import assert from "node:assert/strict";
import { mkdtemp, readFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import * as path from "node:path";
import { test } from "node:test";
import { TokenizerError } from "../../src/errors";
import { ESM2_VOCAB, EsmTokenizer, type Padding } from "../../src/tokenizer/esm-tokenizer";
import { REPO_ROOT } from "../helpers/python";

const FIXTURES = path.join(REPO_ROOT, "test", "fixtures", "tokenizer");

interface Case {
  kind: "single" | "truncate" | "batch" | "decode";
  text?: string;
  texts?: string[];
  max_length?: number;
  options?: { padding?: string; max_length?: number; truncation?: boolean };
  input_ids: number[] | number[][];
  attention_mask?: number[] | number[][];
  tokens?: string[];
  text_skip_special?: string;
}

async function loadCases(): Promise<{ generator: string; cases: Case[] }> {
  return JSON.parse(await readFile(path.join(FIXTURES, "cases.json"), "utf8"));
}

function label(c: Case): string {
  return JSON.stringify(c.text ?? c.texts ?? c.input_ids).slice(0, 60);
}

test("the built-in vocabulary equals the fixture vocab.txt byte for byte", async () => {
  const fromFile = await readFile(path.join(FIXTURES, "vocab.txt"), "utf8");
  assert.equal(ESM2_VOCAB.join("\n"), fromFile);
  assert.equal(Buffer.byteLength(fromFile), 93);
});

test("token ids equal Hugging Face EsmTokenizer for every reference case", async () => {
  const { generator, cases } = await loadCases();
  const tok = await EsmTokenizer.fromDirectory(path.join(FIXTURES, "saved"));
  assert.ok(cases.length >= 50, `only ${cases.length} cases`);
  let checked = 0;
  for (const c of cases) {
    const where = `${c.kind} ${label(c)} (${generator})`;
    if (c.kind === "single") {
      assert.deepEqual(tok.encode(c.text!), c.input_ids, where);
      assert.deepEqual(tok.tokenize(c.text!), c.tokens, where);
    } else if (c.kind === "truncate") {
      assert.deepEqual(
        tok.encode(c.text!, { maxLength: c.max_length, truncation: true }),
        c.input_ids,
        where,
      );
    } else if (c.kind === "batch") {
      const o = c.options!;
      const enc = tok.encodeBatch(c.texts!, {
        padding: o.padding as Padding,
        maxLength: o.max_length,
        truncation: o.truncation ?? false,
      });
      assert.deepEqual(enc.inputIds, c.input_ids, where);
      assert.deepEqual(enc.attentionMask, c.attention_mask, where);
    } else {
      const ids = c.input_ids as number[];
      assert.equal(tok.decode(ids), c.text, where);
      assert.equal(tok.decode(ids, { skipSpecialTokens: true }), c.text_skip_special, where);
    }
    checked++;
  }
  assert.equal(checked, cases.length);
});

test("saved files reload to the same tokenizer and match Python's vocab.txt", async () => {
  const dir = await mkdtemp(path.join(tmpdir(), "esmkit-tok-"));
  const tok = new EsmTokenizer();
  const files = await tok.save(dir);
  assert.deepEqual(files.sort(), [
    "special_tokens_map.json",
    "tokenizer.json",
    "tokenizer_config.json",
    "vocab.txt",
  ]);
  assert.equal(
    await readFile(path.join(dir, "vocab.txt"), "utf8"),
    await readFile(path.join(FIXTURES, "saved", "vocab.txt"), "utf8"),
  );
  const again = await EsmTokenizer.fromDirectory(dir);
  assert.deepEqual(again.vocab, tok.vocab);
  assert.equal(again.maskId, 32);
  assert.deepEqual(again.encode("MK<mask>J"), [0, 20, 15, 32, 3, 2]);
});

test("transformers.js AutoTokenizer loads our tokenizer.json and tokenizes identically", async () => {
  const { cases } = await loadCases();
  const dir = await mkdtemp(path.join(tmpdir(), "esmkit-tokjs-"));
  await new EsmTokenizer().save(dir);
  const { AutoTokenizer, env } = await import("@huggingface/transformers");
  env.allowRemoteModels = false;
  env.localModelPath = path.dirname(dir);
  const hf = await AutoTokenizer.from_pretrained(path.basename(dir));
  // transformers.js truncates AFTER adding <cls>/<eos> (it cuts the <eos>), unlike
  // Python; so truncation is compared only where the sequence fits (see README).
  let compared = 0;
  for (const c of cases) {
    const fits = c.kind === "truncate" && (c.input_ids as number[]).length < c.max_length!;
    if (c.kind === "single" || fits) {
      const out = hf(c.text!) as { input_ids: { data: ArrayLike<bigint> } };
      assert.deepEqual(
        Array.from(out.input_ids.data, Number),
        c.input_ids,
        `transformers.js on ${label(c)}`,
      );
      compared++;
    } else if (c.kind === "batch" && !c.options?.truncation && c.options?.padding === "longest") {
      const out = hf(c.texts!, { padding: true }) as {
        input_ids: { data: ArrayLike<bigint>; dims: number[] };
        attention_mask: { data: ArrayLike<bigint> };
      };
      const [rows, width] = out.input_ids.dims as [number, number];
      const ids = Array.from(out.input_ids.data, Number);
      const mask = Array.from(out.attention_mask.data, Number);
      const split = (a: number[]) =>
        Array.from({ length: rows }, (_, r) => a.slice(r * width, (r + 1) * width));
      assert.deepEqual(split(ids), c.input_ids, `transformers.js batch ${label(c)}`);
      assert.deepEqual(split(mask), c.attention_mask, `transformers.js batch mask ${label(c)}`);
      compared++;
    }
  }
  assert.ok(compared >= 40, `compared ${compared}`);
});

test("bad inputs and bad files fail with TokenizerError naming the problem", async () => {
  const tok = new EsmTokenizer();
  assert.throws(
    () => tok.encode("MKT", { maxLength: 1 }),
    (e: unknown) => {
      assert.ok(e instanceof TokenizerError);
      assert.match(e.message, /maxLength must be an integer >= 2.*got 1/);
      return true;
    },
  );
  assert.throws(() => tok.encodeBatch(["M"], { padding: "max_length" }), /needs maxLength/);
  await assert.rejects(EsmTokenizer.fromDirectory(path.join(REPO_ROOT, "src")), /No vocab.txt in/);
  assert.throws(() => new EsmTokenizer(["A", "B"]), /cls token "<cls>" is not in the vocabulary/);
});

test("firstUnknown reports the first character that would become <unk>", () => {
  const tok = new EsmTokenizer();
  assert.equal(tok.firstUnknown("MKTAYIAK"), undefined);
  assert.deepEqual(tok.firstUnknown("MKT*AY"), { index: 3, char: "*" });
  assert.deepEqual(tok.firstUnknown("MKTaY"), { index: 3, char: "a" });
  assert.equal(tok.firstUnknown("MK<mask>T"), undefined);
});
