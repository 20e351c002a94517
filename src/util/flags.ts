/**
 * Declarative flags: one table per command says, for every flag, its type, the values it
 * accepts, its default and its help line. Everything else comes from the table: the
 * argument parsing and `--help` of the command-line (src/cli/command.ts), and the
 * SageMaker hyperparameters of `esmkit train` (src/aws/hyperparameters.ts, from
 * src/train/flags.ts). Nothing here reads argv or the environment: it is data and
 * text-to-value checks, so any layer may import it.
 *
 * Adding a flag: add one entry to the command's table, keyed by the flag's name without
 * the dashes, and read it in the command's `run` under the same key:
 *
 *     "batch-size": flag.int("sequences per model call", { min: 1, default: 8 }),
 *
 * - Builders: `flag.string`, `flag.int`, `flag.float`, `flag.bool`, `flag.choice`,
 *   `flag.list` (comma-separated names), `flag.repeated` (repeatable, a list),
 *   `flag.keyValues` (repeatable KEY=VALUE, an object), `flag.custom` (your own `Kind`).
 * - Options: `default` (the value when the flag is absent; --help shows it),
 *   `defaultText` (what --help shows when the default is decided elsewhere, e.g. from the
 *   environment; the value stays undefined), `required`, `value` (the placeholder in
 *   --help, e.g. "DIR"), `conflicts` (flags that may not be given with it), `requires`
 *   (flags it needs), `negatable` (bool: `--no-NAME` too), and for train only
 *   `hyperparameter` (false: not a SageMaker hyperparameter; a string: its doc there).
 * - The value's type follows from the builder: `run` sees `number` for an int with a
 *   default or `required`, `number | undefined` otherwise.
 * - Messages come from the kind: `--seed expects an integer, got "abc"`.
 */
import { ConfigError } from "../errors";

/** How a flag's text becomes a value, and how to say what is accepted. */
export interface Kind<T> {
  /** Placeholder after the flag in --help (N, F, NAME); a flag's `value` overrides it. */
  readonly placeholder: string;
  /** Everything accepted, in words: "an integer >= 1", "jsonl or csv". */
  readonly accepts: string;
  /** Text -> value, or the words for what was expected (the type first, then the range). */
  parse(text: string): { value: T } | { expected: string };
  /** A presence flag on the command line (`--quiet`); true/false as a hyperparameter. */
  readonly boolean?: true;
}

export interface FlagOptions<T> {
  /** The value when the flag is absent (shown by --help). */
  default?: T;
  /** What --help shows as the default when it is decided elsewhere; the value stays undefined. */
  defaultText?: string;
  required?: boolean;
  /** Placeholder in --help: `--out DIR`. */
  value?: string;
  /** Flags that may not be given together with this one. */
  conflicts?: readonly string[];
  /** Flags this one needs. */
  requires?: readonly string[];
  /** train only: false keeps it out of the SageMaker hyperparameters; a string is its doc there. */
  hyperparameter?: false | string;
}

export interface Flag<T = unknown, Always extends boolean = boolean> extends FlagOptions<T> {
  readonly kind: Kind<unknown>;
  readonly help: string;
  /** Given any number of times; the values are collected by `collect`. */
  readonly repeatable?: boolean;
  readonly collect?: (values: unknown[]) => T;
  /** bool: `--no-NAME` sets false (the last of the two wins). */
  readonly negatable?: boolean;
  /** Type only: the value type, and whether it is always present (default or required). */
  readonly __value?: [T, Always];
}

// biome-ignore lint/suspicious/noExplicitAny: a table holds flags of every value type
export type FlagTable = Readonly<Record<string, Flag<any, boolean>>>;

/** The parsed values of a table, keyed by flag name. */
export type Values<F extends FlagTable> = {
  -readonly [K in keyof F]: F[K] extends Flag<infer T, infer A>
    ? A extends true
      ? T
      : T | undefined
    : never;
};

type Always<O> = O extends { default: unknown }
  ? true
  : O extends { required: true }
    ? true
    : false;

/** A ConfigError about a flag; `code` matches Node's parseArgs codes for the same failures. */
export class FlagError extends ConfigError {
  readonly code: string;
  constructor(message: string, code: string, context: Record<string, unknown> = {}) {
    super(message, context);
    this.code = code;
  }
}

function range(o: { min?: number; max?: number; minExclusive?: boolean; maxExclusive?: boolean }) {
  const lo = o.min === undefined ? "" : ` ${o.minExclusive ? ">" : ">="} ${o.min}`;
  const hi = o.max === undefined ? "" : ` ${o.maxExclusive ? "<" : "<="} ${o.max}`;
  return lo && hi ? `${lo} and${hi}` : lo + hi;
}

function inRange(
  n: number,
  o: { min?: number; max?: number; minExclusive?: boolean; maxExclusive?: boolean },
) {
  if (o.min !== undefined && (o.minExclusive ? n <= o.min : n < o.min)) return false;
  if (o.max !== undefined && (o.maxExclusive ? n >= o.max : n > o.max)) return false;
  return true;
}

export interface Range {
  min?: number;
  max?: number;
  minExclusive?: boolean;
  maxExclusive?: boolean;
}

function numberKind(integer: boolean, r: Range): Kind<number> {
  const type = integer ? "an integer" : "a number";
  const accepts = type + range(r);
  return {
    placeholder: integer ? "N" : "F",
    accepts,
    parse(text) {
      const n = text.trim() === "" ? Number.NaN : Number(text);
      if (!Number.isFinite(n) || (integer && !Number.isInteger(n))) return { expected: type };
      return inRange(n, r) ? { value: n } : { expected: accepts };
    },
  };
}

/** "a or b", "one of a, b, c". */
export function choices(values: readonly string[]): string {
  return values.length === 2 ? `${values[0]} or ${values[1]}` : `one of ${values.join(", ")}`;
}

export const kinds = {
  string: {
    placeholder: "S",
    accepts: "a non-empty string",
    parse: (t) => (t.trim() === "" ? { expected: "a non-empty string" } : { value: t }),
  } as Kind<string>,
  bool: {
    placeholder: "",
    accepts: "true or false",
    boolean: true,
    parse(t) {
      const l = t.trim().toLowerCase();
      if (["true", "1", "yes"].includes(l)) return { value: true };
      if (["false", "0", "no"].includes(l)) return { value: false };
      return { expected: "true or false" };
    },
  } as Kind<boolean>,
  int: (r: Range = {}) => numberKind(true, r),
  float: (r: Range = {}) => numberKind(false, r),
  choice<V extends string>(values: readonly V[]): Kind<V> {
    const accepts = choices(values);
    return {
      placeholder: values.join("|"),
      accepts,
      parse: (t) =>
        (values as readonly string[]).includes(t) ? { value: t as V } : { expected: accepts },
    };
  },
  /** Comma-separated names (letters, digits, `_`, `.`), spaces around commas allowed. */
  list: {
    placeholder: "A,B,C",
    accepts: "a comma-separated list of names",
    parse(t) {
      const parts = t.split(",").map((p) => p.trim());
      return parts.every((p) => /^[\w.]+$/.test(p))
        ? { value: parts }
        : { expected: "a comma-separated list of names" };
    },
  } as Kind<string[]>,
  keyValue: {
    placeholder: "KEY=VALUE",
    accepts: "KEY=VALUE",
    parse(t) {
      const i = t.indexOf("=");
      return i <= 0 ? { expected: "KEY=VALUE" } : { value: [t.slice(0, i).trim(), t.slice(i + 1)] };
    },
  } as Kind<[string, string]>,
};

function make<T, A extends boolean>(
  kind: Kind<unknown>,
  help: string,
  options: object | undefined,
  extra: Partial<Flag<T, A>> = {},
): Flag<T, A> {
  return { kind, help, ...options, ...extra };
}

type Opts<T> = FlagOptions<T>;

/** Flag builders; see the module comment. */
export const flag = {
  string: <const O extends Opts<string>>(help: string, o?: O) =>
    make<string, Always<O>>(kinds.string, help, o),
  int: <const O extends Opts<number> & Range>(help: string, o?: O) =>
    make<number, Always<O>>(kinds.int(o), help, o),
  float: <const O extends Opts<number> & Range>(help: string, o?: O) =>
    make<number, Always<O>>(kinds.float(o), help, o),
  bool: <const O extends Opts<boolean> & { negatable?: boolean }>(help: string, o?: O) =>
    make<boolean, Always<O>>(kinds.bool, help, o),
  choice: <const V extends string, const O extends Opts<V>>(
    values: readonly V[],
    help: string,
    o?: O,
  ) => make<V, Always<O>>(kinds.choice(values), help, o),
  list: <const O extends Opts<string[]>>(help: string, o?: O) =>
    make<string[], Always<O>>(kinds.list, help, o),
  /** Repeatable: every occurrence is kept, in order. */
  repeated: <const O extends Opts<string[]>>(help: string, o?: O) =>
    make<string[], Always<O>>(kinds.string, help, o, { repeatable: true }),
  /** Repeatable KEY=VALUE, collected into an object (later keys win). */
  keyValues: (help: string, o?: Opts<Record<string, string>>) =>
    make<Record<string, string>, false>(kinds.keyValue, help, o, {
      repeatable: true,
      collect: (pairs) => Object.fromEntries(pairs as [string, string][]),
    }),
  custom: <T, const O extends Opts<T>>(kind: Kind<T>, help: string, o?: O) =>
    make<T, Always<O>>(kind, help, o),
};

/** `--lora-rank` -> `lora_rank`. */
export const snakeCase = (name: string) => name.replace(/-/g, "_");

/** `lora-rank` -> `loraRank`. */
export const camelCase = (name: string) =>
  name.replace(/-([a-z])/g, (_, c: string) => c.toUpperCase());

/** What --help shows as a flag's default, or undefined when it has none. */
export function defaultText(f: Flag): string | undefined {
  if (f.defaultText !== undefined) return f.defaultText;
  if (f.default === undefined || f.default === false) return undefined;
  if (Array.isArray(f.default)) return f.default.join(",");
  const n = f.default;
  return typeof n === "number" && n !== 0 && Math.abs(n) < 1e-3 ? n.toExponential() : String(n);
}

export function editDistance(a: string, b: string): number {
  const d = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    let prev = d[0]!;
    d[0] = i;
    for (let j = 1; j <= b.length; j++) {
      const cur = d[j]!;
      d[j] = Math.min(d[j]! + 1, d[j - 1]! + 1, prev + (a[i - 1] === b[j - 1] ? 0 : 1));
      prev = cur;
    }
  }
  return d[b.length]!;
}

/** The candidate closest to `word`, when it is close enough to be a typo. */
export function closest(word: string, candidates: Iterable<string>): string | undefined {
  let best: string | undefined;
  let bestD = Number.POSITIVE_INFINITY;
  for (const c of candidates) {
    const dist = editDistance(word, c);
    if (dist < bestD) [best, bestD] = [c, dist];
  }
  return best !== undefined && bestD <= Math.max(2, Math.floor(word.length / 4)) ? best : undefined;
}

/** "--a", "--a and --b", "--a, --b and --c". */
export function listNames(names: readonly string[]): string {
  return names.length <= 1
    ? (names[0] ?? "")
    : `${names.slice(0, -1).join(", ")} and ${names[names.length - 1]}`;
}

/**
 * The first broken `conflicts` / `requires` rule among the given flags, as a message;
 * `show` writes a flag's name as the user wrote it (`--warmup-steps`, `warmup_steps`).
 */
export function relationProblem(
  flags: FlagTable,
  given: ReadonlySet<string>,
  show: (name: string) => string,
): string | undefined {
  for (const name of given) {
    const f = flags[name];
    const clash = f?.conflicts?.find((c) => given.has(c));
    if (clash) return `give ${show(name)} or ${show(clash)}, not both`;
    const missing = f?.requires?.filter((r) => !given.has(r)) ?? [];
    if (missing.length) return `${show(name)} needs ${listNames(missing.map(show))}`;
  }
  return undefined;
}
