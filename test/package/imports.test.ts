/**
 * The import graph of src/: no file imports itself back through others (no cycle), and
 * every import between folders goes down the layering below (docs/architecture.md,
 * "What each folder may import").
 *
 * Imports are read with TypeScript's own parser, so comments and strings never count
 * and every form does: `import` / `import type` / `export ... from`, side-effect
 * imports, `import x = require()`, dynamic `import("./x")`, `require("./x")` and
 * inline type imports `import("./x").T`. Only relative specifiers are followed (a
 * package is not a file of src/); each must resolve to a file of src/.
 */
import assert from "node:assert/strict";
import { existsSync, readdirSync, readFileSync, statSync } from "node:fs";
import * as path from "node:path";
import { test } from "node:test";
import ts from "typescript";
import { REPO_ROOT } from "../helpers/python";

const SRC = path.join(REPO_ROOT, "src");

/**
 * The folders of src/ (and its top-level files, by name without .ts), lowest first. A
 * file may import files of its own folder and of folders on lower lines only: folders
 * on one line stand side by side and do not import one another.
 */
const LAYERS: readonly (readonly string[])[] = [
  ["errors"],
  ["util"],
  ["gradients"],
  ["backend"],
  ["io", "tokenizer"],
  ["data", "model"],
  ["lora"],
  ["engine"],
  ["onnx"],
  ["train", "serve", "export"],
  ["aws", "display", "kernel"],
  ["embed"],
  ["register-defaults"],
  ["cli"],
  ["index"],
];

/** The folder of a file of src/ ("model/esm2.ts" -> "model", "backend.ts" -> "backend"). */
function unitOf(file: string): string {
  return file.includes("/") ? file.slice(0, file.indexOf("/")) : file.replace(/\.ts$/, "");
}

function rankOf(unit: string): number | undefined {
  const i = LAYERS.findIndex((layer) => layer.includes(unit));
  return i < 0 ? undefined : i;
}

interface FoundImport {
  specifier: string;
  /** 1-based line of the import. */
  line: number;
  kind: "static" | "type" | "export" | "dynamic" | "require" | "import-type";
}

/** Every relative module specifier in a TypeScript source. */
function relativeImports(source: string, fileName = "file.ts"): FoundImport[] {
  const sf = ts.createSourceFile(fileName, source, ts.ScriptTarget.Latest, true);
  const out: FoundImport[] = [];
  const add = (lit: ts.Node | undefined, kind: FoundImport["kind"]) => {
    if (!lit || !ts.isStringLiteralLike(lit) || !lit.text.startsWith(".")) return;
    const line = sf.getLineAndCharacterOfPosition(lit.getStart(sf)).line + 1;
    out.push({ specifier: lit.text, line, kind });
  };
  const visit = (node: ts.Node) => {
    if (ts.isImportDeclaration(node)) {
      add(node.moduleSpecifier, node.importClause?.isTypeOnly ? "type" : "static");
    } else if (ts.isExportDeclaration(node)) {
      add(node.moduleSpecifier, "export");
    } else if (
      ts.isImportEqualsDeclaration(node) &&
      ts.isExternalModuleReference(node.moduleReference)
    ) {
      add(node.moduleReference.expression, "require");
    } else if (ts.isCallExpression(node)) {
      if (node.expression.kind === ts.SyntaxKind.ImportKeyword) add(node.arguments[0], "dynamic");
      else if (ts.isIdentifier(node.expression) && node.expression.text === "require")
        add(node.arguments[0], "require");
    } else if (ts.isImportTypeNode(node) && ts.isLiteralTypeNode(node.argument)) {
      add(node.argument.literal, "import-type");
    }
    ts.forEachChild(node, visit);
  };
  visit(sf);
  return out;
}

function sourceFiles(dir: string): string[] {
  return readdirSync(dir)
    .sort()
    .flatMap((name) => {
      const p = path.join(dir, name);
      if (statSync(p).isDirectory()) return sourceFiles(p);
      return name.endsWith(".ts") && !name.endsWith(".d.ts") ? [p] : [];
    });
}

/** The src/ file a specifier names (`./x` -> x.ts or x/index.ts), relative to src/. */
function resolve(fromFile: string, specifier: string): string | undefined {
  const base = path.resolve(path.dirname(fromFile), specifier.replace(/\.js$/, ""));
  for (const candidate of [`${base}.ts`, path.join(base, "index.ts")]) {
    if (existsSync(candidate) && candidate.startsWith(SRC + path.sep))
      return path.relative(SRC, candidate).split(path.sep).join("/");
  }
  return undefined;
}

interface ImportGraph {
  /** File (relative to src/) -> the files it imports, with where. */
  edges: Map<string, { to: string; line: number; kind: FoundImport["kind"] }[]>;
  /** Relative specifiers that name no file of src/ (JSON data excepted). */
  unresolved: string[];
}

function importGraph(): ImportGraph {
  const edges: ImportGraph["edges"] = new Map();
  const unresolved: string[] = [];
  for (const file of sourceFiles(SRC)) {
    const rel = path.relative(SRC, file).split(path.sep).join("/");
    const list: { to: string; line: number; kind: FoundImport["kind"] }[] = [];
    for (const imp of relativeImports(readFileSync(file, "utf8"), file)) {
      const to = resolve(file, imp.specifier);
      if (to) list.push({ to, line: imp.line, kind: imp.kind });
      // package.json, read at run time relative to build/: data, not a module of src/.
      else if (!imp.specifier.endsWith(".json"))
        unresolved.push(`${rel}:${imp.line} "${imp.specifier}"`);
    }
    edges.set(rel, list);
  }
  return { edges, unresolved };
}

/**
 * Strongly connected components of more than one file (Tarjan), or a file importing
 * itself: each as its files (sorted) and one cycle through them.
 */
function cycles(edges: ImportGraph["edges"]): { files: string[]; path: string[] }[] {
  let next = 0;
  const index = new Map<string, number>();
  const low = new Map<string, number>();
  const stack: string[] = [];
  const onStack = new Set<string>();
  const found: { files: string[]; path: string[] }[] = [];
  const connect = (v: string) => {
    index.set(v, next);
    low.set(v, next++);
    stack.push(v);
    onStack.add(v);
    for (const { to: w } of edges.get(v) ?? []) {
      if (!index.has(w)) {
        connect(w);
        low.set(v, Math.min(low.get(v)!, low.get(w)!));
      } else if (onStack.has(w)) low.set(v, Math.min(low.get(v)!, index.get(w)!));
    }
    if (low.get(v) === index.get(v)) {
      const component: string[] = [];
      let w: string;
      do {
        w = stack.pop()!;
        onStack.delete(w);
        component.push(w);
      } while (w !== v);
      const selfLoop = (edges.get(v) ?? []).some((e) => e.to === v);
      if (component.length > 1 || selfLoop)
        found.push({ files: component.sort(), path: cyclePath(component, edges) });
    }
  };
  for (const v of [...edges.keys()].sort()) if (!index.has(v)) connect(v);
  return found;
}

/** One closed walk through a component, for the message: a -> b -> c -> a. */
function cyclePath(component: string[], edges: ImportGraph["edges"]): string[] {
  const inside = new Set(component);
  const start = [...component].sort()[0]!;
  // Breadth-first from start back to start, inside the component.
  const prev = new Map<string, string>();
  const queue = [start];
  while (queue.length > 0) {
    const v = queue.shift()!;
    for (const { to } of edges.get(v) ?? []) {
      if (!inside.has(to)) continue;
      if (to === start) {
        const walk = [start];
        for (let u = v; u !== start; u = prev.get(u)!) walk.splice(1, 0, u);
        return [...walk, start];
      }
      if (!prev.has(to)) {
        prev.set(to, v);
        queue.push(to);
      }
    }
  }
  return [...component, component[0]!];
}

test("the import reader finds every form of relative import and ignores comments and strings", () => {
  const source = [
    'import { a } from "./a";',
    'import type { B } from "../b";',
    'import "./side-effect";',
    'export { c } from "./c";',
    'export * from "./d";',
    'import e = require("./e");',
    "async function f() {",
    '  const g = await import("./g");',
    '  const h = require("./h");',
    '  let t: import("./t").T;',
    "}",
    '// import { no } from "./comment";',
    '/* require("./block-comment") */',
    "const s = \"import('./string')\";",
    'import { pkg } from "some-package";',
  ].join("\n");
  const found = relativeImports(source).map((i) => `${i.kind} ${i.specifier} ${i.line}`);
  assert.deepEqual(found, [
    "static ./a 1",
    "type ../b 2",
    "static ./side-effect 3",
    "export ./c 4",
    "export ./d 5",
    "require ./e 6",
    "dynamic ./g 8",
    "require ./h 9",
    "import-type ./t 10",
  ]);
});

test("cycles are found, reported as a path back to where they start", () => {
  const e = (to: string) => ({ to, line: 1, kind: "static" as const });
  const graph = new Map([
    ["a.ts", [e("b.ts")]],
    ["b.ts", [e("c.ts")]],
    ["c.ts", [e("a.ts"), e("d.ts")]],
    ["d.ts", []],
    ["self.ts", [e("self.ts")]],
  ]);
  assert.deepEqual(cycles(graph), [
    { files: ["a.ts", "b.ts", "c.ts"], path: ["a.ts", "b.ts", "c.ts", "a.ts"] },
    { files: ["self.ts"], path: ["self.ts", "self.ts"] },
  ]);
});

test("no import cycle between files of src/", () => {
  const { edges, unresolved } = importGraph();
  assert.ok(edges.size > 50, `only ${edges.size} files read under src/`);
  assert.deepEqual(unresolved, [], "relative imports that name no file of src/");
  const found = cycles(edges).map(
    (c) => `${c.files.join(", ")} (for example ${c.path.join(" -> ")})`,
  );
  assert.deepEqual(
    found,
    [],
    `import cycles between files of src/ (files that import one another, directly or through others):\n  ${found.join("\n  ")}`,
  );
});

test("every import between folders of src/ goes down the layering", () => {
  const { edges } = importGraph();
  const unplaced = [...new Set([...edges.keys()].map(unitOf))].filter(
    (u) => rankOf(u) === undefined,
  );
  assert.deepEqual(unplaced, [], "folders (or top-level files) of src/ missing from LAYERS");
  const against: string[] = [];
  for (const [file, list] of edges) {
    const from = unitOf(file);
    for (const e of list) {
      const to = unitOf(e.to);
      if (to !== from && rankOf(to)! >= rankOf(from)!) {
        const how = rankOf(to) === rankOf(from) ? "beside it" : "above it";
        against.push(`${file}:${e.line} imports ${e.to} (${e.kind}): ${to}/ is ${how}`);
      }
    }
  }
  assert.deepEqual(
    against,
    [],
    `imports against the layering (${LAYERS.map((l) => l.join(", ")).join(" < ")}):\n  ${against.join("\n  ")}`,
  );
});

test("docs/architecture.md states the layering the test checks", () => {
  const doc = readFileSync(path.join(REPO_ROOT, "docs", "architecture.md"), "utf8");
  const line = LAYERS.map((layer) => layer.join(", ")).join(" < ");
  assert.ok(
    doc.split("\n").some((l) => l.trim() === line),
    `docs/architecture.md should state the layering as the line:\n${line}`,
  );
});
