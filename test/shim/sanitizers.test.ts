// The shim's parsers fuzzed as CI runs them (npm run fuzz: four libFuzzer harnesses under ASan +
// UBSan, each for a bounded time, failing on any finding), and the shim's own test suite run once
// against an ASan + UBSan build of the shim, failing on any sanitizer report.
import { spawn } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, describe, expect, it } from 'vitest';

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '../..');
/** Seconds per harness; CI uses the default. */
const FUZZ_SECONDS = Number(process.env.MESHCNI_FUZZ_SECONDS ?? 20);

const logs = mkdtempSync(join(tmpdir(), 'mcni-san-'));
afterAll(() => rmSync(logs, { recursive: true, force: true }));

type Ran = { code: number | null; out: string };

function run(cmd: string, args: string[], env: Record<string, string> = {}): Promise<Ran> {
  return new Promise((done, fail) => {
    const child = spawn(cmd, args, { cwd: ROOT, env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    child.stdout.on('data', (c: Buffer) => (out += c.toString()));
    child.stderr.on('data', (c: Buffer) => (out += c.toString()));
    child.on('error', fail);
    child.on('close', (code) => done({ code, out }));
  });
}

describe.skipIf(process.env.MESHCNI_SHIM !== undefined)('sanitizers', () => {
  it(
    `fuzzes the JSON parser, pod index, HTTP answer reader and request builder ${FUZZ_SECONDS}s each: no finding`,
    {
      timeout: 120_000 + FUZZ_SECONDS * 4 * 2000,
    },
    async () => {
      const r = await run('bash', ['fuzz/run.sh'], { FUZZ_SECONDS: String(FUZZ_SECONDS) });
      expect(r.code, r.out.slice(-4000)).toBe(0);
      for (const name of ['json', 'pod_index', 'http_answer', 'request']) {
        expect(r.out).toContain(`fuzz_${name}: ${FUZZ_SECONDS}s`);
      }
      expect(r.out.match(/^Done \d+ runs/gm)).toHaveLength(4);
    },
  );

  it(
    'passes the shim test suite against an ASan + UBSan build of the shim, with no sanitizer report',
    {
      timeout: 300_000,
    },
    async () => {
      const build = await run('make', ['-s', '-C', 'fuzz', '../build/fuzz/meshcni-asan']);
      expect(build.code, build.out).toBe(0);
      const san = `log_path=${join(logs, 'san')}`;
      const files = ['test/shim/shim.test.ts', 'test/shim/security.test.ts', 'test/shim/fuzz.test.ts'];
      const r = await run('npx', ['vitest', 'run', ...files], {
        MESHCNI_SHIM: join(ROOT, 'build/fuzz/meshcni-asan'),
        // The checks of the shipped binary itself (static, musl) skip against this build; they run
        // in the outer suite. CI's rule that a skip fails the run is for that suite, not this one.
        CI: 'false',
        ASAN_OPTIONS: `${san}:detect_leaks=1`,
        UBSAN_OPTIONS: `${san}:print_stacktrace=1:halt_on_error=1`,
      });
      const reports = readdirSync(logs).map((f) => readFileSync(join(logs, f), 'utf8'));
      expect(reports.join('\n').slice(0, 8000)).toBe('');
      expect(r.code, r.out.slice(-4000)).toBe(0);
      expect(r.out).toMatch(/Tests\s+.*\d+ passed/);
      // Only the shipped-binary checks may skip: every behaviour test ran against the sanitizer build.
      expect(r.out).toMatch(/\d+ passed, 0 failed, [0-3] skipped/);
    },
  );
});
