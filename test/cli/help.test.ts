import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import * as path from "node:path";
import { test } from "node:test";
import type { Command } from "../../src/cli/command";
import { esmkit } from "../../src/cli/main";
import { defaultText } from "../../src/util/flags";
import { REPO_ROOT } from "../helpers/python";
import { runMain } from "./run-main";

const CLI = path.join(REPO_ROOT, "bin", "esmkit.js");

/** Every command with a flag table, subcommands included. */
function leaves(c: Command): Command[] {
  return c.commands ? [...c.commands.values()].flatMap(leaves) : [c];
}

const flat = (s: string) => s.replace(/\s+/g, " ");

test("every command's --help lists every flag of its table, in order, with its default", () => {
  const commands = leaves(esmkit);
  assert.deepEqual(
    commands.map((c) => c.name),
    [
      "prepare",
      "train",
      "evaluate",
      "demo",
      "kernel install",
      "kernel list",
      "kernel uninstall",
      "predict",
      "embed",
      "serve",
      "export",
      "sagemaker train",
      "sagemaker deploy",
      "sagemaker invoke",
      "sagemaker delete",
      "sagemaker transform",
      "sagemaker describe",
    ],
  );
  for (const c of commands) {
    const help = c.help();
    assert.ok(help.startsWith(`Usage: esmkit ${c.name} `), help.slice(0, 80));
    // An entry is a line starting with its flag, plus the indented lines that continue it.
    const options = help.slice(help.indexOf("\nOptions:\n")).split("\n");
    const entries = new Map<string, string>();
    let current = "";
    for (const line of options) {
      const start = /^ {2}(-\S+)/.exec(line)?.[1];
      if (start) current = start === "-h," ? "--help" : start;
      if (current) entries.set(current, flat(`${entries.get(current) ?? ""} ${line}`));
    }
    const listed = [...entries.keys()];
    const flags = Object.entries(c.flags!);
    assert.deepEqual(listed, [
      ...flags.map(([name, f]) => (f.negatable ? `--[no-]${name}` : `--${name}`)),
      "--help",
    ]);
    for (const [name, f] of flags) {
      const entry = entries.get(f.negatable ? `--[no-]${name}` : `--${name}`)!;
      assert.ok(entry.includes(flat(f.help)), `${c.name} --${name}: ${entry}`);
      const shown = defaultText(f);
      if (shown !== undefined) {
        assert.ok(entry.includes(`default: ${shown})`), `${c.name} --${name}: ${entry}`);
      } else assert.ok(!entry.includes("default:"), `${c.name} --${name}: ${entry}`);
      const required = /\((\w+; )*required[;)]/.test(entry);
      assert.equal(required, f.required === true, `${c.name} --${name}: ${entry}`);
    }
  }
});

test("esmkit sagemaker --help and esmkit kernel install --help print help, exit 0", () => {
  for (const args of [
    ["sagemaker", "--help"],
    ["kernel", "install", "--help"],
  ]) {
    const r = spawnSync(process.execPath, [CLI, ...args], { encoding: "utf8" });
    assert.equal(r.status, 0, r.stderr);
    assert.equal(r.stderr, "");
    assert.match(r.stdout, new RegExp(`^Usage: esmkit ${args.slice(0, -1).join(" ")} `));
  }
});

test("--help, -h and help work on every command and subcommand, on stdout with exit 0", async () => {
  const top = await runMain(["--help"]);
  assert.equal(top.code, 0);
  for (const c of esmkit.commands.values()) {
    assert.ok(top.stdout.includes(`  ${c.name} `) && top.stdout.includes(c.summary), c.name);
  }
  for (const c of [esmkit, ...esmkit.commands.values()]) {
    for (const c2 of [c, ...(c.commands?.values() ?? [])]) {
      const words = c2.name ? c2.name.split(" ") : [];
      for (const ask of [
        [...words, "--help"],
        [...words, "-h"],
        [...words.slice(0, -1), "help", ...words.slice(-1)],
      ]) {
        const r = await runMain(ask);
        assert.equal(r.code, 0, `esmkit ${ask.join(" ")}: ${r.stderr}`);
        assert.equal(r.stderr, "", ask.join(" "));
        assert.equal(r.stdout, c2.help(), ask.join(" "));
      }
    }
  }
  // --help wins over anything else on the line, even an unknown flag; not after "--".
  const train = await runMain(["train", "--bogus", "--help"]);
  assert.equal(train.code, 0);
  assert.match(train.stdout, /^Usage: esmkit train /);
  const group = await runMain(["sagemaker", "deploy", "--endpoint", "x", "-h"]);
  assert.equal(group.code, 0);
  assert.match(group.stdout, /^Usage: esmkit sagemaker deploy /);
  // A group without a subcommand shows its help, but as a usage error.
  const bare = await runMain(["sagemaker"]);
  assert.equal(bare.code, 2);
  assert.match(bare.stdout, /^Usage: esmkit sagemaker <subcommand>/);
});

test("a group lists its subcommands and says how to get their help", () => {
  const sm = esmkit.commands.get("sagemaker")!;
  const help = sm.help();
  for (const [word, c] of sm.commands!)
    assert.ok(help.includes(`  ${word}`) && help.includes(c.summary));
  assert.match(help, /Run "esmkit sagemaker <subcommand> --help" for the options of a subcommand/);
});
