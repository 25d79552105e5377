// Benchmark: one apply of the documented Istio ruleset into a fresh netns — meshcni's single netlink
// transaction vs `iptables-nft-restore` run as a process inside the netns (the istio-cni way),
// interleaved in one run. Not a test: it prints medians and ratios and never fails on timing.
import { execFileSync, spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { applyTables } from '../src/nft/apply.js';
import { encodeXtRuleset } from '../src/nft/xtables/encode.js';
import { parseRestore } from '../src/nft/xtables/parse.js';
import { nowMs, summarize, table } from './stats.js';

const iterations = Number(process.env.BENCH_ITERATIONS ?? 200);
const rulesFile = new URL('../test/fixtures/istio-sidecar-default.v4.rules', import.meta.url).pathname;
const rulesText = readFileSync(rulesFile, 'utf8');
const contents = encodeXtRuleset(parseRestore(rulesText, 'ip'));

const ns = (i: number, kind: string): string => `mcni-bench-${process.pid}-${kind}-${i}`;
const addNs = (name: string): void => void execFileSync('ip', ['netns', 'add', name]);
const delNs = (name: string): void => void spawnSync('ip', ['netns', 'del', name]);

async function main(): Promise<void> {
  const meshcni: number[] = [];
  const restore: number[] = [];
  for (let i = 0; i < iterations; i++) {
    const a = ns(i, 'm');
    const b = ns(i, 'r');
    addNs(a);
    addNs(b);
    try {
      let t = nowMs();
      await applyTables(`/var/run/netns/${a}`, contents);
      meshcni.push(nowMs() - t);
      t = nowMs();
      const r = spawnSync('nsenter', [`--net=/var/run/netns/${b}`, 'iptables-nft-restore'], { input: rulesText });
      restore.push(nowMs() - t);
      if (r.status !== 0) throw new Error(`iptables-nft-restore failed: ${r.stderr}`);
    } finally {
      delNs(a);
      delNs(b);
    }
  }
  const m = summarize(meshcni);
  const r = summarize(restore);
  console.log(`apply of the documented Istio ruleset (21 rules), ${iterations} fresh netns each, interleaved\n`);
  console.log(
    table(
      ['path', 'n', 'min ms', 'p50 ms', 'p90 ms', 'p99 ms', 'p50 ratio'],
      [
        ['meshcni netlink transaction', m.n, m.min_ms, m.p50_ms, m.p90_ms, m.p99_ms, '1.0x'],
        [
          'nsenter iptables-nft-restore',
          r.n,
          r.min_ms,
          r.p50_ms,
          r.p90_ms,
          r.p99_ms,
          `${(r.p50_ms / m.p50_ms).toFixed(1)}x`,
        ],
      ],
    ),
  );
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
