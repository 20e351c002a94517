/**
 * Child of memory.test.ts: embeds a FASTA to Parquet (per residue) and prints its RSS
 * every `every` proteins as JSON lines, after a full GC (run with --expose-gc), so the
 * numbers show what stays held rather than garbage not yet collected.
 *
 *   node --expose-gc memory-child.js MODEL_DIR FASTA OUT EVERY
 */
import { embedToParquet } from "../../src/embed";

async function main(): Promise<void> {
  const [model, fasta, out, every] = process.argv.slice(2) as [string, string, string, string];
  const gc = (globalThis as { gc?: () => void }).gc;
  let next = Number(every);
  const summary = await embedToParquet({
    model,
    fasta,
    out,
    perResidue: true,
    threads: 1,
    onProgress: (p) => {
      if (p.proteins < next) return;
      next += Number(every);
      gc?.();
      process.stdout.write(
        `${JSON.stringify({ proteins: p.proteins, rss: process.memoryUsage().rss })}\n`,
      );
    },
  });
  process.stdout.write(`${JSON.stringify({ done: summary.rows, bytes: summary.bytes })}\n`);
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
