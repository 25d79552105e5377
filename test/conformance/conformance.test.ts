// Istio 1.17.8 and 1.30.3 conformance: each case's expected rules restored by iptables-nft-restore in one netns,
// meshcni's plan applied (one netlink transaction) in another; the kernel must read both back the
// same. `meshcni-agent rules --pod` must print exactly that read-back. Root.
import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { DEFAULT_CAPTURE_CONFIG, type CaptureConfig } from '../../src/capture/config.js';
import { parsePodManifest } from '../../src/capture/pod.js';
import { planRules } from '../../src/capture/plan.js';
import { applyTables, readTables } from '../../src/nft/apply.js';
import { diffTables } from '../../src/nft/ruleset.js';
import { NetnsPool, inNetns, netnsPath, nftBytecode, nftJson, normaliseSave } from '../helpers/netns.js';
import {
  ALL_GOLDENS,
  CASES,
  ISTIO_COMMIT,
  SKIPPED,
  podManifest,
  type ConformanceCase,
  type SkippedGolden,
} from './cases.js';
import { ALL_GOLDENS_1_30, CASES_1_30, ISTIO_1_30_COMMIT, SKIPPED_1_30 } from './cases-1.30.js';
import {
  ALL_NFT_GOLDENS_1_30,
  NFT_CASES_1_30,
  NFT_CNI_1_30,
  NFT_GOLDEN_BLOBS_1_30,
  NFT_SKIPPED_1_30,
  type NftConformanceCase,
} from './cases-nft-1.30.js';

const MAIN = join(resolve(fileURLToPath(import.meta.url), '../../..'), 'dist/cli/main.js');
const dir = mkdtempSync(join(tmpdir(), `mcni-conf-${process.pid}-`));
const pool = new NetnsPool('conf');
afterEach(() => pool.cleanup());
afterAll(() => {
  pool.cleanup();
  rmSync(dir, { recursive: true, force: true });
});

/** iptables-save text → for each table, each chain's declaration and its rule lines in order. */
function byChain(text: string): Record<string, string[]> {
  const out: Record<string, string[]> = {};
  let table = '';
  for (const line of normaliseSave(text).split('\n')) {
    if (line.startsWith('*')) table = line;
    else if (line.startsWith(':')) out[`${table} ${line.split(' ')[0]!.slice(1)}`] = [line];
    else if (line.startsWith('-A ')) out[`${table} ${line.split(' ')[1]}`]!.push(line);
  }
  return out;
}

const name = (golden: string): string => golden.replace(/^.*\/(cni|capture|nftables)\/.*?testdata\//, '$1: ');

/** Every golden of a release is named exactly once, as a case or as a skip with a reason. */
function coversEveryGolden(cases: { golden: string }[], skipped: SkippedGolden[], all: string[]): void {
  const covered = [...cases.map((c) => c.golden), ...skipped.map((s) => s.golden)];
  expect([...covered].sort()).toEqual([...all].sort());
  expect(new Set(covered).size).toBe(covered.length);
  for (const s of skipped) expect(s.reason.length).toBeGreaterThan(20);
}

describe('the conformance suite covers Istio 1.17.8', () => {
  it('names every golden exactly once, as a case or as a skip with a reason', () => {
    coversEveryGolden(CASES, SKIPPED, ALL_GOLDENS);
    expect(ISTIO_COMMIT).toBe('a781f9ee6c511d8f22140d8990c31e577b2a9676');
  });

  it('runs every golden whose inputs are pod annotations or istio-proxy env', () => {
    expect(CASES).toHaveLength(20);
    expect(SKIPPED).toHaveLength(14);
  });
});

/** How a release's cases are planned: the agent config, the proxy image, the CLI's settings file. */
interface Release {
  commit: string;
  config: CaptureConfig;
  image?: string;
  /** Settings file text for `meshcni-agent rules --config`; none: the defaults. */
  cliConfig?: string;
}

/** `meshcni-agent rules --pod` of the manifest (with the settings file, if any): its stdout; it must succeed silently. */
function rulesCli(manifest: string, index: string, cliConfig?: string): string {
  const file = join(dir, `${index}.json`);
  writeFileSync(file, manifest);
  const args = [MAIN, 'rules', '--pod', file];
  if (cliConfig !== undefined) {
    writeFileSync(join(dir, `${index}.yaml`), cliConfig);
    args.push('--config', join(dir, `${index}.yaml`));
  }
  const cli = spawnSync(process.execPath, args, { encoding: 'utf8' });
  expect(cli.stderr).toBe('');
  expect(cli.status).toBe(0);
  return cli.stdout;
}

async function conforms(c: ConformanceCase, index: string, r: Release): Promise<void> {
  const manifest = podManifest(c, r.commit, r.image);
  const plan = planRules(parsePodManifest(manifest), r.config);
  if (!plan.capture) throw new Error(`expected the pod of ${c.golden} to be captured: ${plan.reason}`);
  const istio = pool.create();
  const ours = pool.create();
  inNetns(istio, 'iptables-nft-restore', [], c.v4);
  if (c.v6) inNetns(istio, 'ip6tables-nft-restore', [], c.v6);
  await applyTables(netnsPath(ours), plan.tables);
  const want4 = normaliseSave(inNetns(istio, 'iptables-nft-save', []));
  const want6 = normaliseSave(inNetns(istio, 'ip6tables-nft-save', []));
  expect(normaliseSave(inNetns(ours, 'iptables-nft-save', []))).toBe(want4);
  expect(normaliseSave(inNetns(ours, 'ip6tables-nft-save', []))).toBe(want6);

  // The CLI prints IPv4 then (dual stack) IPv6 rules in iptables-save syntax, user chains in
  // creation order (iptables-nft-save lists them by name): every chain's lines must be the
  // kernel's, and restoring the printed text must read back identically.
  const [v4, v6 = ''] = rulesCli(manifest, index, r.cliConfig).split(/^# IPv6.*$/m);
  expect(byChain(v4!)).toEqual(byChain(want4));
  expect(byChain(v6)).toEqual(byChain(c.v6 ? want6 : ''));
  const printed = pool.create();
  inNetns(printed, 'iptables-nft-restore', [], v4);
  if (c.v6) inNetns(printed, 'ip6tables-nft-restore', [], v6);
  expect(normaliseSave(inNetns(printed, 'iptables-nft-save', []))).toBe(want4);
  expect(normaliseSave(inNetns(printed, 'ip6tables-nft-save', []))).toBe(want6);
}

describe('conformant with Istio 1.17.8 goldens (kernel read-back, and meshcni-agent rules)', () => {
  const release: Release = { commit: ISTIO_COMMIT, config: DEFAULT_CAPTURE_CONFIG };
  it.each(CASES.map((c) => [name(c.golden), c] as const))('%s', async (_n, c) => {
    await conforms(c, String(CASES.indexOf(c)), release);
  });
});

describe('the conformance suite covers Istio 1.30.3', () => {
  it('names every golden exactly once, as a case or as a skip with a reason', () => {
    coversEveryGolden(CASES_1_30, SKIPPED_1_30, ALL_GOLDENS_1_30);
    expect(CASES_1_30).toHaveLength(22);
    expect(ISTIO_1_30_COMMIT).toBe('56df41f63e513f834c9a3af33d8aed82d1d961f2');
  });
});

describe('conformant with Istio 1.30.3 goldens (istioVersion 1.30; the CLI with auto and a 1.30.3 proxy image)', () => {
  const release: Release = {
    commit: ISTIO_1_30_COMMIT,
    config: { ...DEFAULT_CAPTURE_CONFIG, istioVersion: '1.30' },
    image: 'docker.io/istio/proxyv2:1.30.3',
    cliConfig: "istioVersion: 'auto'\n",
  };
  it.each(CASES_1_30.map((c) => [name(c.golden), c] as const))('%s', async (_n, c) => {
    await conforms(c, `1.30-${CASES_1_30.indexOf(c)}`, release);
  });
});

describe('the conformance suite covers Istio 1.30.3 native nftables', () => {
  it('names every nftables golden exactly once, as a case or as a skip with a reason', () => {
    coversEveryGolden(NFT_CASES_1_30, NFT_SKIPPED_1_30, ALL_NFT_GOLDENS_1_30);
    expect(NFT_CASES_1_30).toHaveLength(15);
    expect(ALL_NFT_GOLDENS_1_30).toHaveLength(42);
  });

  it("writes each case's expected text byte for byte as Istio's golden (the golden's git blob id)", () => {
    for (const c of NFT_CASES_1_30) {
      const blob = createHash('sha1')
        .update(`blob ${Buffer.byteLength(c.nft)}\0`)
        .update(c.nft)
        .digest('hex');
      expect([c.golden, blob]).toEqual([c.golden, NFT_GOLDEN_BLOBS_1_30[c.golden.replace(/^.*\/|\.golden$/g, '')]]);
    }
  });
});

/**
 * The nft layout with Istio 1.30.3's rules: the case's `nft -f` text restored in one netns, meshcni's
 * plan applied (one netlink transaction) in another; the kernel's bytecode, its JSON listing and
 * meshcni's own decoder must agree. `meshcni-agent rules` must print text that `nft -f` restores to
 * the same.
 */
async function conformsNft(c: NftConformanceCase, index: string): Promise<void> {
  const manifest = podManifest(c, ISTIO_1_30_COMMIT, 'docker.io/istio/proxyv2:1.30.3');
  const plan = planRules(parsePodManifest(manifest), {
    ...DEFAULT_CAPTURE_CONFIG,
    layout: 'nft',
    istioVersion: '1.30',
  });
  if (!plan.capture) throw new Error(`expected the pod of ${c.golden} to be captured: ${plan.reason}`);
  const istio = pool.create();
  const ours = pool.create();
  inNetns(istio, 'nft', ['-f', '/dev/stdin'], c.nft);
  await applyTables(netnsPath(ours), plan.tables);
  const want = nftBytecode(istio);
  expect(nftBytecode(ours)).toBe(want);
  expect(nftJson(ours)).toEqual(nftJson(istio));
  expect(diffTables(plan.tables, await readTables(netnsPath(istio)))).toEqual([]);

  const printed = pool.create();
  inNetns(printed, 'nft', ['-f', '/dev/stdin'], rulesCli(manifest, index, "istioVersion: 'auto'\nlayout: 'nft'\n"));
  expect(nftBytecode(printed)).toBe(want);
}

describe('conformant with Istio 1.30.3 native nftables goldens (nft layout, istioVersion 1.30)', () => {
  it.each(NFT_CASES_1_30.map((c) => [name(c.golden), c] as const))('%s', async (_n, c) => {
    await conformsNft(c, `nft-${NFT_CASES_1_30.indexOf(c)}`);
  });
});

describe("Istio 1.30.3's nftables backend for the CNI plug-in's own pods (no golden: rules from run.go)", () => {
  it.each(NFT_CNI_1_30.map((c) => [c.name, c] as const))('%s', async (_n, c) => {
    await conformsNft({ ...c, golden: `cni/${c.name}` }, `nft-cni-${NFT_CNI_1_30.indexOf(c)}`);
  });
});
