// The npm package as an operator gets it: `npm pack` of a clean copy of the sources (prepack builds
// dist, the prebuilt addon and the static shim), installed from the tarball into an empty directory
// with no compiler on PATH, then `npx meshcni-agent` run from there. Also: the addon loads from a
// layout without binding.gyp, and a copy without the addon refuses to start with one clear line.
import { spawnSync, type SpawnSyncReturns } from 'node:child_process';
import {
  cpSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  realpathSync,
  rmSync,
  statSync,
  symlinkSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { normaliseSave } from '../helpers/netns.js';

const ROOT = resolve(fileURLToPath(import.meta.url), '../../..');
const fixture = readFileSync(new URL('../fixtures/istio-sidecar-default.v4.rules', import.meta.url), 'utf8');
const work = mkdtempSync(join(tmpdir(), `mcni-pkg-${process.pid}-`));
afterAll(() => rmSync(work, { recursive: true, force: true }));

/** The environment of a nested npm: none of the outer `npm test`'s npm_* variables (its prefix, its script). */
function cleanEnv(path: string): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [k, v] of Object.entries(process.env))
    if (!/^npm_/i.test(k) && k !== 'INIT_CWD' && k !== 'NODE_OPTIONS') env[k] = v;
  env.PATH = path;
  return env;
}

function run(
  cmd: string,
  args: string[],
  cwd: string,
  env: NodeJS.ProcessEnv,
  input?: string,
): SpawnSyncReturns<string> {
  const r = spawnSync(cmd, args, { cwd, env, encoding: 'utf8', input, timeout: 300_000 });
  if (r.error) throw r.error;
  return r;
}

function ok(r: SpawnSyncReturns<string>, what: string): string {
  expect(r.status, `${what} failed:\n${r.stdout}\n${r.stderr}`).toBe(0);
  return r.stdout;
}

// A PATH holding only node, npm, npx and sh: no gcc, cc, make, python. The npm CLI is found next to
// the npm on the outer PATH (it is a script run by node, not a compiler).
const tools = join(work, 'tools');
const NO_COMPILER_PATH = tools;
const app = join(work, 'app');
const pkg = join(app, 'node_modules', 'meshcni');
const npxEnv = (): NodeJS.ProcessEnv => cleanEnv(NO_COMPILER_PATH);
const npx = (...args: string[]): SpawnSyncReturns<string> =>
  run(join(tools, 'npx'), ['--no-install', 'meshcni-agent', ...args], app, npxEnv());

let tarball = '';

beforeAll(() => {
  // 1. A clean copy of what a fresh clone has (no dist, build or prebuilds), built by `npm pack`.
  const tree = join(work, 'tree');
  mkdirSync(tree);
  for (const f of [
    'package.json',
    'package-lock.json',
    'binding.gyp',
    'tsconfig.json',
    'tsconfig.build.json',
    'src',
    'native',
  ])
    cpSync(join(ROOT, f), join(tree, f), { recursive: true });
  symlinkSync(join(ROOT, 'node_modules'), join(tree, 'node_modules'));
  const out = join(work, 'out');
  mkdirSync(out);
  const packEnv = cleanEnv(process.env.PATH ?? '');
  packEnv.npm_config_nodedir = process.env.npm_config_nodedir ?? '/usr'; // node-gyp: no header download here
  ok(run('npm', ['pack', '--pack-destination', out], tree, packEnv), 'npm pack');
  const tarballs = readdirSync(out).filter((f) => f.endsWith('.tgz'));
  expect(tarballs).toHaveLength(1);
  tarball = join(out, tarballs[0]!);

  // 2. Install the tarball into an empty project with no compiler reachable.
  mkdirSync(tools);
  const npmCli = realpathSync(spawnSync('sh', ['-c', 'command -v npm'], { encoding: 'utf8' }).stdout.trim());
  symlinkSync(process.execPath, join(tools, 'node'));
  symlinkSync('/bin/sh', join(tools, 'sh')); // npm runs lifecycle scripts with `sh`
  symlinkSync(npmCli, join(tools, 'npm'));
  symlinkSync(join(npmCli, '..', 'npx-cli.js'), join(tools, 'npx'));
  mkdirSync(app);
  writeFileSync(join(app, 'package.json'), JSON.stringify({ name: 'mcni-pkg-test', private: true }));
  ok(
    run(join(tools, 'npm'), ['install', '--prefer-offline', '--no-audit', '--no-fund', tarball], app, npxEnv()),
    'npm install of the tarball',
  );
}, 600_000);

describe('npm pack', () => {
  it('ships dist, the prebuilt N-API addon for this libc, and the static shim at build/Release/meshcni', () => {
    const list = spawnSync('tar', ['-tzf', tarball], { encoding: 'utf8' }).stdout.split('\n');
    expect(list).toContain('package/dist/cli/main.js');
    expect(list).toContain('package/dist/kernel/index.js');
    expect(list).toContain(`package/prebuilds/linux-${process.arch}/meshcni.glibc.node`);
    expect(list).toContain('package/build/Release/meshcni');
    expect(list.filter((f) => f.startsWith('package/build/'))).toEqual(['package/build/Release/meshcni']);
    expect(list.filter((f) => /^package\/(test|bench|node_modules)\//.test(f))).toEqual([]);
    // The demo and the test runtime (CNI exec, sandboxes) are dev tools, not the product.
    expect(list.filter((f) => /^package\/dist\/(demo|runtime)\//.test(f))).toEqual([]);
  });
});

describe('installed from the tarball without a compiler', () => {
  it('has no compiler on the PATH it was installed and run with', () => {
    for (const tool of ['gcc', 'cc', 'c++', 'make', 'python3', 'python']) {
      expect(spawnSync('/bin/sh', ['-c', `command -v ${tool}`], { env: npxEnv() }).status, tool).not.toBe(0);
    }
  });

  it('compiled nothing: the addon comes from prebuilds/', () => {
    expect(readdirSync(join(pkg, 'build', 'Release'))).toEqual(['meshcni']);
    const r = run(
      join(tools, 'node'),
      ['-e', `console.log(require('node-gyp-build').resolve(${JSON.stringify(pkg)}))`],
      app,
      npxEnv(),
    );
    expect(ok(r, 'node-gyp-build resolve').trim()).toBe(
      join(pkg, 'prebuilds', `linux-${process.arch}`, 'meshcni.glibc.node'),
    );
  });

  it('npx meshcni-agent --version prints the package version', () => {
    const version = (JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as { version: string }).version;
    expect(ok(npx('--version'), '--version')).toMatch(new RegExp(`^meshcni-agent ${version.replace(/\./g, '\\.')} `));
  });

  it('npx meshcni-agent rules prints the iptables-save text istio-iptables would produce', () => {
    const pod = join(work, 'pod.yaml');
    writeFileSync(
      pod,
      'apiVersion: v1\nkind: Pod\nmetadata:\n  name: doc\n  namespace: shop\n  annotations:\n' +
        '    traffic.sidecar.istio.io/excludeInboundPorts: "22"\n    traffic.sidecar.istio.io/excludeOutboundIPRanges: "192.168.0.1/32"\n' +
        'spec:\n  containers:\n    - name: web\n    - name: istio-proxy\n',
    );
    const out = ok(npx('rules', '--pod', pod), 'rules');
    expect(
      out
        .split('\n')
        .filter((l) => l && !l.startsWith('#'))
        .join('\n'),
    ).toBe(normaliseSave(fixture));
  });

  it('npx meshcni-agent install copies the shim from the package and chains it into the primary config', () => {
    const conf = join(work, 'net.d');
    const bin = join(work, 'cni-bin');
    mkdirSync(conf);
    writeFileSync(
      join(conf, '10-bridge.conflist'),
      JSON.stringify({ cniVersion: '1.0.0', name: 'podnet', plugins: [{ type: 'bridge', bridge: 'cni0' }] }),
    );
    // No agent serves here: --without-agent (install refuses otherwise; test/install covers the refusal).
    ok(
      npx(
        'install',
        '--cni-conf-dir',
        conf,
        '--cni-bin-dir',
        bin,
        '--socket',
        join(work, 'agent.sock'),
        '--without-agent',
      ),
      'install',
    );
    const shim = join(bin, 'meshcni');
    expect(readFileSync(shim).equals(readFileSync(join(pkg, 'build', 'Release', 'meshcni')))).toBe(true);
    expect(statSync(shim).mode & 0o777).toBe(0o755);
    // It is the real static shim: it answers the CNI VERSION command on its own.
    const version = spawnSync(shim, [], {
      env: { CNI_COMMAND: 'VERSION' },
      input: '{"cniVersion":"1.0.0"}',
      encoding: 'utf8',
    });
    expect(version.status).toBe(0);
    expect(JSON.parse(version.stdout)).toHaveProperty('supportedVersions');
    const list = JSON.parse(readFileSync(join(conf, '10-bridge.conflist'), 'utf8')) as {
      plugins: { type: string; socketPath?: string }[];
    };
    expect(list.plugins.map((p) => p.type)).toEqual(['bridge', 'meshcni']);
    expect(list.plugins[1]!.socketPath).toBe(join(work, 'agent.sock'));
  });

  it('npx meshcni-agent install gives up after --wait-timeout with one line when no primary config appears', () => {
    const conf = join(work, 'empty.d');
    mkdirSync(conf);
    const r = npx(
      'install',
      '--cni-conf-dir',
      conf,
      '--cni-bin-dir',
      join(work, 'cni-bin2'),
      '--wait-timeout',
      '1',
      '--without-agent',
    );
    expect(r.status).toBe(1);
    expect(r.stderr.trim().split('\n')).toEqual([
      `meshcni-agent: no valid primary CNI config in ${conf} after 1000 ms (last check: no .conflist/.conf/.json in ${conf} yet)`,
    ]);
  });
});

describe('the addon loader', () => {
  /** A copy of the installed package next to it (its dependencies still resolve from app/node_modules). */
  function copyOfPackage(name: string, drop: string[]): string {
    const dir = join(app, 'node_modules', name);
    cpSync(pkg, dir, { recursive: true });
    for (const d of drop) rmSync(join(dir, d), { recursive: true, force: true });
    return dir;
  }

  it('loads the addon from a layout without binding.gyp (the image copies no binding.gyp)', () => {
    const dir = copyOfPackage('meshcni-no-gyp', ['binding.gyp', 'native']);
    const script = `import(${JSON.stringify(join(dir, 'dist/kernel/index.js'))}).then((k) => { k.loadAddon(); console.log(String(k.ownNetnsIdentity().ino)); })`;
    const out = ok(run(join(tools, 'node'), ['-e', script], app, npxEnv()), 'load addon');
    expect(out.trim()).toBe(String(statSync('/proc/self/ns/net', { bigint: true }).ino));
  });

  it('refuses to start the agent without the addon, naming where it looked, and never reports ready', () => {
    const dir = copyOfPackage('meshcni-no-addon', ['prebuilds']);
    expect(existsSync(join(dir, 'build', 'Release', 'meshcni'))).toBe(true);
    const state = join(work, 'state-no-addon');
    mkdirSync(join(state, 'pods'), { recursive: true });
    const r = run(
      join(tools, 'node'),
      [
        join(dir, 'dist/cli/main.js'),
        'serve',
        '--pods-dir',
        join(state, 'pods'),
        '--socket',
        join(state, 'cni.sock'),
        '--state-dir',
        state,
        '--metrics-address',
        '127.0.0.1:0',
      ],
      app,
      npxEnv(),
    );
    expect(r.status).toBe(1);
    const lines = r.stderr.trim().split('\n');
    expect(lines).toHaveLength(1);
    expect(lines[0]).toMatch(/^meshcni-agent: cannot load the meshcni native addon \(looked for /);
    expect(lines[0]).toContain(
      `${join(dir, 'build', 'Release')}/*.node and ${join(dir, 'prebuilds', `linux-${process.arch}`)}/*.node`,
    );
    expect(lines[0]).toMatch(/No native build was found for platform=linux/);
    expect(r.stdout).not.toMatch(/meshcni agent ready/);
    expect(r.stdout).toMatch(/"level":60.*meshcni agent failed to start/);
    expect(existsSync(join(state, 'cni.sock'))).toBe(false);
  });
});
