/**
 * Graceful shutdown on SIGTERM (what SageMaker and `docker stop` send, with SIGKILL 30 s
 * later) and SIGINT (Ctrl-C): the first signal drains the server; a second one means
 * "now" and exits at once with status 1.
 */
export const SHUTDOWN_SIGNALS: readonly NodeJS.Signals[] = ["SIGTERM", "SIGINT"];

/** Resolves with the first shutdown signal received; later ones force an exit. */
export function waitForShutdownSignal(
  signals: readonly NodeJS.Signals[] = SHUTDOWN_SIGNALS,
): Promise<NodeJS.Signals> {
  return new Promise((resolve) => {
    let received = false;
    const handler = (signal: NodeJS.Signals) => {
      if (received) {
        process.stderr.write(`esmkit serve: second ${signal}, exiting now\n`);
        process.exit(1);
      }
      received = true;
      resolve(signal);
    };
    for (const s of signals) process.on(s, handler);
  });
}
