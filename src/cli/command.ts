/**
 * Commands of the `esmkit` CLI, each declared once: its flag table (src/util/flags.ts)
 * gives the parsing, the checks and the `--help` text; its `run` gets typed values.
 *
 * Adding a command: write `src/cli/NAME-command.ts` exporting
 *
 *     export const nameCommand = defineCommand({
 *       name: "name",                       // "sagemaker deploy" for a subcommand
 *       summary: "one line for the command list",
 *       description: "What it does (a paragraph in --help).",
 *       flags: { out: flag.string("output directory", { value: "DIR", required: true }) },
 *       async run(v) { ...; return 0; },   // v.out: string
 *     });
 *
 * and list it in src/cli/main.ts (or in its group, e.g. sagemaker's `defineGroup`).
 * `--help`/`-h` anywhere (before `--`) prints the help to stdout, exit 0. An unknown flag
 * or a bad value throws a `FlagError` (exit 2, naming the flag, the value and what is
 * accepted, with a "did you mean" for near misses). A missing required flag, a broken
 * `oneOf` group, `conflicts` or `requires` prints the problem and the help to stderr
 * and returns 2.
 *
 * Node's `util.parseArgs` does the tokenizing: no dependency, and the values, checks and
 * help stay ours to share with the SageMaker hyperparameters (src/aws/hyperparameters.ts).
 * commander or clipanion would bring their own help layout, error output and exit
 * handling to wrap, and could not serve the hyperparameters, which are not argv.
 */
import { parseArgs } from "node:util";
import {
  closest,
  defaultText,
  type Flag,
  FlagError,
  type FlagTable,
  listNames,
  relationProblem,
  type Values,
} from "../util/flags";

export interface Command {
  /** The words after `esmkit`: "train", "sagemaker deploy". */
  readonly name: string;
  readonly summary: string;
  /** The --help text. */
  help(): string;
  /** Runs with the arguments after the command's name; resolves to the exit code. */
  run(argv: string[]): Promise<number>;
  /** A command's flag table, or a group's subcommands by name. */
  readonly flags?: FlagTable;
  readonly commands?: ReadonlyMap<string, Command>;
}

type Names<F> = keyof F & string;

export interface CommandSpec<F extends FlagTable> {
  name: string;
  summary: string;
  description: string;
  flags: F;
  /** Groups of flags of which exactly one must be given. */
  oneOf?: readonly (readonly Names<F>[])[];
  /** More `Usage:` lines after the generated one. */
  usage?: readonly string[];
  /** Text after the options in --help. */
  notes?: string;
  /**
   * Runs after parsing, before the required / oneOf / relation checks; a number ends the
   * command with that exit code (train: the SageMaker container mode needs no flags).
   */
  before?(v: Values<F>, given: ReadonlySet<Names<F>>): Promise<number | undefined>;
  run(v: Values<F>, given: ReadonlySet<Names<F>>): Promise<number>;
}

const isHelp = (a: string) => a === "--help" || a === "-h";

/** --help asked for before any `--`. */
function wantsHelp(argv: readonly string[]): boolean {
  const end = argv.indexOf("--");
  return (end < 0 ? argv : argv.slice(0, end)).some(isHelp);
}

function flagWords(name: string, f: Flag): string {
  const shown = f.negatable ? `--[no-]${name}` : `--${name}`;
  const value = f.kind.boolean ? "" : ` ${f.value ?? f.kind.placeholder}`;
  return shown + value;
}

/** Words of `text` in lines of at most `width` characters (explicit line breaks kept). */
function wrap(text: string, width: number): string[] {
  const lines: string[] = [];
  for (const paragraph of text.split("\n")) {
    let line = "";
    for (const word of paragraph.split(" ")) {
      if (line && line.length + 1 + word.length > width) {
        lines.push(line);
        line = word;
      } else line = line ? `${line} ${word}` : word;
    }
    lines.push(line);
  }
  return lines;
}

const LINE_WIDTH = 100;

/** Two columns: flag and help (wrapped), then "(default: ...)" or "(required)". */
function optionLines(flags: FlagTable): string {
  const rows: [string, string][] = Object.entries(flags).map(([name, f]) => {
    const shown = defaultText(f);
    const notes = [
      f.repeatable ? "repeatable" : "",
      f.required ? "required" : "",
      shown !== undefined ? `default: ${shown}` : "",
    ].filter(Boolean);
    return [flagWords(name, f), f.help + (notes.length ? ` (${notes.join("; ")})` : "")];
  });
  rows.push(["-h, --help", "show this help"]);
  const width = Math.min(30, Math.max(...rows.map(([l]) => l.length))) + 2;
  const pad = " ".repeat(width + 2);
  return rows
    .map(([left, text]) => {
      const body = wrap(text, LINE_WIDTH - pad.length).join(`\n${pad}`);
      return left.length > width - 2
        ? `  ${left}\n${pad}${body}`
        : `  ${left.padEnd(width)}${body}`;
    })
    .join("\n");
}

function usageLine<F extends FlagTable>(spec: CommandSpec<F>): string {
  const parts = [`esmkit ${spec.name}`];
  for (const [name, f] of Object.entries(spec.flags)) {
    if (f.required) parts.push(flagWords(name, f));
  }
  for (const group of spec.oneOf ?? []) {
    parts.push(`(${group.map((n) => flagWords(n, spec.flags[n]!)).join(" | ")})`);
  }
  parts.push("[options]");
  return [`Usage: ${parts.join(" ")}`, ...(spec.usage ?? []).map((u) => `       ${u}`)].join("\n");
}

function parseOptions(flags: FlagTable) {
  const options: Record<string, { type: "string" | "boolean"; multiple?: boolean }> = {};
  for (const [name, f] of Object.entries(flags)) {
    options[name] = f.kind.boolean
      ? { type: "boolean" }
      : { type: "string", multiple: f.repeatable === true };
    if (f.negatable) options[`no-${name}`] = { type: "boolean" };
  }
  return options;
}

/**
 * `--NAME -2` as `--NAME=-2` for a flag that takes a value. parseArgs refuses a value that
 * starts with a dash as ambiguous, but a negative number is never a flag here (no flag
 * name starts with a digit), and `--layer -2` is what a user types. Nothing after `--`
 * is touched.
 */
function joinNegativeNumbers(
  argv: string[],
  options: Record<string, { type: "string" | "boolean" }>,
): string[] {
  const out: string[] = [];
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    if (a === "--") {
      out.push(...argv.slice(i));
      break;
    }
    const next = argv[i + 1];
    const name = a.startsWith("--") && !a.includes("=") ? a.slice(2) : undefined;
    if (
      name !== undefined &&
      Object.hasOwn(options, name) &&
      options[name]!.type === "string" &&
      next !== undefined &&
      /^-(\d|\.\d)/.test(next)
    ) {
      out.push(`${a}=${next}`);
      i++;
    } else out.push(a);
  }
  return out;
}

/**
 * argv -> typed values (defaults filled in) and the names of the flags given. Throws a
 * FlagError for an unknown flag, a missing value or a bad one.
 */
export function parseFlags<F extends FlagTable>(
  flags: F,
  argv: string[],
  command: string,
): { values: Values<F>; given: Set<Names<F>> } {
  const options = parseOptions(flags);
  argv = joinNegativeNumbers(argv, options);
  const help = `; see "esmkit ${command} --help"`;
  // A lenient pass finds unknown flags first, to name them with a suggestion.
  const loose = parseArgs({ args: argv, options, strict: false, tokens: true });
  for (const t of loose.tokens) {
    if (t.kind === "option" && !Object.hasOwn(options, t.name)) {
      const near = closest(t.name, Object.keys(options));
      throw new FlagError(
        `Unknown option '${t.rawName}'${near ? ` (did you mean --${near}?)` : ""}${help}`,
        "ERR_PARSE_ARGS_UNKNOWN_OPTION",
        { flag: t.rawName },
      );
    }
  }
  let parsed: ReturnType<typeof parseArgs>;
  try {
    parsed = parseArgs({ args: argv, options, strict: true, tokens: true });
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code ?? "ERR_PARSE_ARGS";
    throw new FlagError((e as Error).message, code, {});
  }
  const raw = parsed.values as Record<string, string | boolean | string[] | undefined>;
  const values: Record<string, unknown> = {};
  const given = new Set<Names<F>>();
  for (const [name, f] of Object.entries(flags)) {
    let value: unknown;
    if (f.kind.boolean) {
      // The last of --NAME / --no-NAME wins.
      for (const t of parsed.tokens!) {
        if (t.kind === "option" && (t.name === name || t.name === `no-${name}`)) {
          value = t.name === name;
        }
      }
    } else if (raw[name] !== undefined) {
      const texts = ([] as string[]).concat(raw[name] as string | string[]);
      const parsedTexts = texts.map((text) => {
        const r = f.kind.parse(text);
        if ("expected" in r) {
          throw new FlagError(
            // "; got" where the accepted values hold commas themselves.
            `--${name} expects ${r.expected}${r.expected.includes(",") ? ";" : ","} got ${JSON.stringify(text)}`,
            "ERR_PARSE_ARGS_INVALID_OPTION_VALUE",
            { flag: name, value: text },
          );
        }
        return r.value;
      });
      value = f.repeatable ? (f.collect ? f.collect(parsedTexts) : parsedTexts) : parsedTexts[0];
    }
    if (value !== undefined) given.add(name as Names<F>);
    values[name] = value ?? f.default;
  }
  return { values: values as Values<F>, given };
}

/** Missing required flags, broken oneOf groups, conflicts and requires, as one message. */
function usageProblem<F extends FlagTable>(
  spec: CommandSpec<F>,
  given: ReadonlySet<string>,
): string | undefined {
  const dashed = (n: string) => `--${n}`;
  const missing = Object.entries(spec.flags)
    .filter(([n, f]) => f.required && !given.has(n))
    .map(([n]) => dashed(n));
  if (missing.length) return `${listNames(missing)} ${missing.length > 1 ? "are" : "is"} required`;
  for (const group of spec.oneOf ?? []) {
    const got = group.filter((n) => given.has(n)).map(dashed);
    const all = group.map(dashed).join(", ");
    if (got.length === 0) return `give one of ${all}`;
    if (got.length > 1) return `give only one of ${all} (got ${got.join(", ")})`;
  }
  return relationProblem(spec.flags, given, dashed);
}

export function defineCommand<const F extends FlagTable>(spec: CommandSpec<F>): Command {
  const help = () =>
    `${usageLine(spec)}\n\n${spec.description.trim()}\n\nOptions:\n${optionLines(spec.flags)}\n${spec.notes ? `\n${spec.notes.trim()}\n` : ""}`;
  return {
    name: spec.name,
    summary: spec.summary,
    help,
    flags: spec.flags,
    async run(argv) {
      if (wantsHelp(argv)) {
        process.stdout.write(help());
        return 0;
      }
      const { values, given } = parseFlags(spec.flags, argv, spec.name);
      const early = await spec.before?.(values, given);
      if (early !== undefined) return early;
      const problem = usageProblem(spec, given);
      if (problem) {
        process.stderr.write(`esmkit ${spec.name}: ${problem}\n\n${help()}`);
        return 2;
      }
      return spec.run(values, given);
    },
  };
}

export interface GroupSpec {
  /** "" for esmkit itself. */
  name: string;
  summary: string;
  description?: string;
  commands: readonly Command[];
  notes?: string;
}

/**
 * A command made of subcommands (`esmkit sagemaker deploy`, `esmkit kernel install`):
 * `help SUB` and `SUB --help` print SUB's help; `--help`, `-h` and `help` the group's.
 */
export function defineGroup(spec: GroupSpec): Command & { commands: Map<string, Command> } {
  const noun = spec.name ? "subcommand" : "command";
  const commands = new Map(spec.commands.map((c) => [c.name.split(" ").pop()!, c]));
  const prefix = spec.name ? `esmkit ${spec.name}` : "esmkit";
  const help = () => {
    const width = Math.max(...[...commands.keys()].map((k) => k.length)) + 2;
    const lines = [...commands].map(([k, c]) => `  ${k.padEnd(width)}${c.summary}`);
    const parts = [`Usage: ${prefix} <${noun}> [options]`];
    if (spec.description) parts.push(spec.description.trim());
    parts.push(`${noun === "command" ? "Commands" : "Subcommands"}:\n${lines.join("\n")}`);
    parts.push(`Run "${prefix} <${noun}> --help" for the options of a ${noun}.`);
    if (spec.notes) parts.push(spec.notes.trim());
    return `${parts.join("\n\n")}\n`;
  };
  const find = (word: string): Command => {
    const c = commands.get(word);
    if (c) return c;
    const near = closest(word, commands.keys());
    throw new FlagError(
      `unknown ${noun} "${word}"${near ? ` (did you mean ${near}?)` : ""}; expected one of: ${[...commands.keys()].join(", ")}`,
      "ERR_UNKNOWN_COMMAND",
      { [noun]: word },
    );
  };
  return {
    name: spec.name,
    summary: spec.summary,
    help,
    commands,
    async run(argv) {
      const [word, ...rest] = argv;
      if (word === undefined || isHelp(word) || word === "help") {
        const topic = word === "help" && rest[0] !== undefined ? find(rest[0]) : undefined;
        process.stdout.write(topic ? topic.help() : help());
        return word === undefined ? 2 : 0;
      }
      return find(word).run(rest);
    },
  };
}
