// Per-key serialisation: work for one key runs one at a time, in arrival order; different keys
// never wait for each other. The agent keys CNI requests by container id.

export class KeyedLock {
  private readonly tails = new Map<string, Promise<void>>();

  /** Runs `work` after every earlier `run` for the same key has settled; returns its result. */
  async run<T>(key: string, work: () => Promise<T>): Promise<T> {
    const previous = this.tails.get(key) ?? Promise.resolve();
    let release!: () => void;
    const done = new Promise<void>((r) => (release = r));
    const tail = previous.then(() => done);
    this.tails.set(key, tail);
    try {
      await previous;
      return await work();
    } finally {
      release();
      // The last one out removes the key, so the map holds only keys with work queued.
      if (this.tails.get(key) === tail) this.tails.delete(key);
    }
  }

  /** Keys with work running or queued (for tests and metrics). */
  get size(): number {
    return this.tails.size;
  }
}
