// meshcni-agent's one-shot commands, run as the built binary: rules, apply, verify, and errors that
// fit on one line of stderr with a non-zero exit. apply/verify use real netns (root).
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { NetnsPool, inNetns, netnsPath, normaliseSave } from '../helpers/netns.js';

const ROOT = resolve(fileURLToPath(import.meta.url), '../../..');
const MAIN = join(ROOT, 'dist/cli/main.js');
const fixture = readFileSync(new URL('../fixtures/istio-sidecar-default.v4.rules', import.meta.url), 'utf8');
const dir = mkdtempSync(join(tmpdir(), 'mcni-cli-'));
const pool = new NetnsPool('cli');
afterEach(() => pool.cleanup());
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const cli = (...args: string[]): { code: number; stdout: string; stderr: string } => {
  const r = spawnSync(process.execPath, [MAIN, ...args], { encoding: 'utf8' });
  return { code: r.status ?? -1, stdout: r.stdout, stderr: r.stderr };
};

function podFile(name: string, annotations: Record<string, string>, containers = ['web', 'istio-proxy']): string {
  const path = join(dir, `${name}.yaml`);
  const ann = Object.entries(annotations)
    .map(([k, v]) => `    ${k}: ${JSON.stringify(v)}\n`)
    .join('');
  writeFileSync(
    path,
    `apiVersion: v1\nkind: Pod\nmetadata:\n  name: ${name}\n  namespace: shop\n${ann ? `  annotations:\n${ann}` : ''}spec:\n  containers:\n${containers.map((c) => `    - name: ${c}\n`).join('')}`,
  );
  return path;
}

const documented = (): string =>
  podFile('doc', {
    'traffic.sidecar.istio.io/excludeInboundPorts': '22',
    'traffic.sidecar.istio.io/excludeOutboundIPRanges': '192.168.0.1/32',
  });

describe('meshcni-agent rules', () => {
  it('prints the iptables-save text istio-iptables would produce', () => {
    const r = cli('rules', '--pod', documented());
    expect(r.code).toBe(0);
    const body = r.stdout
      .split('\n')
      .filter((l) => l && !l.startsWith('#'))
      .join('\n');
    expect(body).toBe(normaliseSave(fixture));
  });

  it('prints nft text for the nft layout', () => {
    const r = cli('rules', '--pod', documented(), '--layout', 'nft');
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/^table inet istio-proxy-nat \{/);
    expect(r.stdout).toContain('chain istio-output {');
  });

  it('prints the skip reason for a pod that is not captured', () => {
    const r = cli('rules', '--pod', podFile('plain', {}, ['web']));
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/not captured: no container named istio-proxy/);
  });

  it.each([
    [['rules', '--pod', '/nonexistent.yaml'], /cannot read pod file \/nonexistent\.yaml/],
    [['rules'], /rules: --pod is required/],
    [['rules', '--pod', 'x', '--bogus', '1'], /unknown flag --bogus/],
    [['frobnicate'], /unknown command 'frobnicate'/],
  ])('fails %j with one clear line on stderr', (args, msg) => {
    const r = cli(...(args as string[]));
    expect(r.code).not.toBe(0);
    expect(r.stderr.trim().split('\n')).toHaveLength(1);
    expect(r.stderr).toMatch(msg);
  });

  it('names the annotation and the value of a bad setting', () => {
    const r = cli('rules', '--pod', podFile('bad', { 'traffic.sidecar.istio.io/includeOutboundPorts': '99999' }));
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/traffic\.sidecar\.istio\.io\/includeOutboundPorts="99999": not a port/);
  });
});

// The documented interface: every command and the flags it accepts (besides --help).
const FLAGS: Record<string, string[]> = {
  serve: [
    'config',
    'log-level',
    'pods-dir',
    'cni-conf-dir',
    'cni-bin-dir',
    'socket',
    'state-dir',
    'metrics-address',
    'metrics-scrape-address',
    'layout',
    'install',
  ],
  rules: ['pod', 'config', 'layout'],
  apply: ['pod', 'config', 'layout', 'netns'],
  verify: ['pod', 'config', 'layout', 'netns'],
  install: ['config', 'log-level', 'cni-conf-dir', 'cni-bin-dir', 'socket', 'wait-timeout', 'without-agent'],
  uninstall: ['config', 'log-level', 'cni-conf-dir', 'cni-bin-dir', 'socket', 'purge'],
};

describe('meshcni-agent usage', () => {
  it('--version prints the package version', () => {
    const version = (JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as { version: string }).version;
    const r = cli('--version');
    expect(r.code).toBe(0);
    expect(r.stdout).toBe(
      `meshcni-agent ${version} (node ${process.versions.node}, ${process.platform}-${process.arch})\n`,
    );
  });

  it('--help lists every command with every flag it accepts', () => {
    const r = cli('--help');
    expect(r.code).toBe(0);
    for (const [cmd, flags] of Object.entries(FLAGS)) {
      const [, flagLine] = new RegExp(`^  ${cmd} +.*\\n +(.*)$`, 'm').exec(r.stdout) ?? [];
      expect(flagLine?.split(' '), cmd).toEqual(flags.map((f) => `--${f}`));
    }
  });

  it.each(Object.entries(FLAGS))('%s --help documents each of its flags and exits 0', (cmd, flags) => {
    const r = cli(cmd, '--help');
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(new RegExp(`^usage: meshcni-agent ${cmd} `));
    const documented = [...r.stdout.matchAll(/^  --([a-z-]+)/gm)].map((m) => m[1]);
    expect(documented).toEqual([...flags, 'help']);
  });

  it.each([
    [['uninstall', '--wait-timeout', '5'], 'uninstall: unknown flag --wait-timeout'],
    [['rules', '--pod'], 'rules: --pod needs a value'],
    [['rules', '--pod='], 'rules: --pod needs a value'],
    [['rules', '--pod', '--layout', 'nft'], 'rules: --pod needs a value'],
    [['rules', '--pod', 'a', '--pod', 'b'], 'rules: --pod given twice'],
    [['rules', 'pod.yaml'], "rules: unexpected argument 'pod.yaml'"],
    [['serve', '--install=yes'], 'serve: --install takes no value'],
    [['apply', '--pod', 'x'], 'apply: --netns is required'],
    [['install', '--wait-timeout', '1m'], 'install: --wait-timeout "1m": must be whole seconds from 1 to 86400'],
    [['install', '--wait-timeout', '0'], 'install: --wait-timeout "0": must be whole seconds from 1 to 86400'],
  ])('%j fails with exit 2 and the one line %j', (args, message) => {
    const r = cli(...(args as string[]));
    expect(r.code).toBe(2);
    expect(r.stderr).toBe(`meshcni-agent: ${message}\n`);
  });
});

describe('meshcni-agent serve settings', () => {
  it.each([
    ['10.0.0.1', 'must be IP:port'],
    ['0.0.0.0:65536', 'must be IP:port'],
  ])('rejects --metrics-scrape-address %j before starting anything', (value, reason) => {
    const r = cli('serve', '--pods-dir', '/nonexistent-pods', '--metrics-scrape-address', value);
    expect(r.code).toBe(1);
    expect(r.stderr).toBe(
      `meshcni-agent: flags: setting 'metricsScrapeAddress' = ${JSON.stringify(value)}: ${reason} such as 0.0.0.0:15121 or [::]:15121 (or '' to disable)\n`,
    );
  });
});

describe('meshcni-agent apply and verify', () => {
  it('programs a namespace that then reads back like iptables-nft-restore of the fixture, and verify agrees', () => {
    const ns = pool.create();
    const oracle = pool.create();
    const pod = documented();
    expect(cli('verify', '--pod', pod, '--netns', netnsPath(ns)).code).toBe(1);
    const a = cli('apply', '--pod', pod, '--netns', netnsPath(ns));
    expect(a.code).toBe(0);
    expect(a.stdout).toMatch(/programmed 1 table\(s\), 21 rule\(s\)/);
    inNetns(oracle, 'iptables-nft-restore', [], fixture);
    expect(normaliseSave(inNetns(ns, 'iptables-nft-save', ['-t', 'nat']))).toBe(
      normaliseSave(inNetns(oracle, 'iptables-nft-save', ['-t', 'nat'])),
    );
    const v = cli('verify', '--pod', pod, '--netns', netnsPath(ns));
    expect(v.code).toBe(0);
    expect(v.stdout).toMatch(/holds exactly the expected rules/);
  });

  it('verify prints the difference when a rule is gone', () => {
    const ns = pool.create();
    const pod = documented();
    cli('apply', '--pod', pod, '--netns', netnsPath(ns));
    inNetns(ns, 'iptables-nft', ['-t', 'nat', '-D', 'ISTIO_OUTPUT', '-d', '192.168.0.1/32', '-j', 'RETURN']);
    const v = cli('verify', '--pod', pod, '--netns', netnsPath(ns));
    expect(v.code).toBe(1);
    expect(v.stdout).toMatch(/differs from the expected rules/);
    expect(v.stdout).toMatch(/ISTIO_OUTPUT/);
  });

  it("refuses the host's own namespace", () => {
    const r = cli('apply', '--pod', documented(), '--netns', '/proc/self/ns/net');
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/host's own network namespace/);
  });
});
