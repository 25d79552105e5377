// Polling for tests that wait on something outside their control (a file, a server, a watch).

/** Resolves once `cond()` holds; throws after `timeoutMs`. */
export async function until(cond: () => boolean, timeoutMs = 5000, everyMs = 10): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (!cond()) {
    if (Date.now() > end) throw new Error('condition not met in time');
    await new Promise((r) => setTimeout(r, everyMs));
  }
}
