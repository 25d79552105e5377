// A seeded pseudo-random source for fuzz tests: the same seed gives the same inputs, so a failure
// printed with its seed can be replayed (MESHCNI_FUZZ_SEED=<seed>).
export class Rng {
  private s: number;
  constructor(readonly seed: number) {
    this.s = seed >>> 0;
  }

  /** mulberry32: small, fast, good enough to pick test inputs. */
  next(): number {
    this.s = (this.s + 0x6d2b79f5) >>> 0;
    let t = this.s;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  }

  int(n: number): number {
    return Math.floor(this.next() * n);
  }

  pick<T>(xs: readonly T[]): T {
    return xs[this.int(xs.length)]!;
  }

  chance(p: number): boolean {
    return this.next() < p;
  }

  /** A string of `n` characters drawn from `alphabet`. */
  str(n: number, alphabet = 'abcdefghijklmnopqrstuvwxyz0123456789_.-/: \t\u0000\u00e9\u{1f600}"\\;=,'): string {
    const chars = [...alphabet];
    let out = '';
    for (let i = 0; i < n; i++) out += chars[this.int(chars.length)];
    return out;
  }

  bytes(n: number): Buffer {
    const b = Buffer.alloc(n);
    for (let i = 0; i < n; i++) b[i] = this.int(256);
    return b;
  }
}

/** The seed for this run: MESHCNI_FUZZ_SEED when set, else a fixed one (CI is reproducible). */
export function fuzzSeed(fixed: number): number {
  const env = process.env.MESHCNI_FUZZ_SEED;
  return env !== undefined && /^\d+$/.test(env) ? Number(env) : fixed;
}
