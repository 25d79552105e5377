// Chains meshcni into the node's CNI configuration and keeps it there: copies the shim into the CNI
// bin dir, inserts our entry into the primary CNI's config, re-inserts after the primary rewrites it,
// and on uninstall puts back the primary's exact bytes.
import { createHash } from 'node:crypto';
import { watch, type FSWatcher } from 'node:fs';
import { chmod, mkdir, readdir, readFile, rmdir, stat, unlink } from 'node:fs/promises';
import { basename, extname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { pino, type Logger } from 'pino';
import { writeFileAtomic } from '../files/atomic-write.js';
import { agentAnswers } from './agent-probe.js';
import {
  CONFIG_EXTENSIONS,
  CniConfigError,
  hasEntry,
  insertEntry,
  listFileName,
  meshcniEntry,
  removeEntry,
  type MeshcniEntry,
} from './conflist.js';

/** The shim's file name in the CNI bin dir: the runtime runs the binary named by the entry's `type`. */
export const SHIM_NAME = 'meshcni';
/** Prefix of every file we create next to a target while writing it; never picked as a config. */
export const TEMP_PREFIX = '.meshcni-tmp-';
/** Where the primary's original bytes are kept, by default (a directory: runtimes only load files). */
export const BACKUP_DIR_NAME = '.meshcni-backup';

const REPO_ROOT = fileURLToPath(new URL('../../', import.meta.url));

export interface InstallerOptions {
  cniConfDir?: string;
  cniBinDir?: string;
  /** The shim binary to copy; default `<repo>/build/Release/meshcni`. */
  shimPath?: string;
  /** Holds the primary config's original bytes for an exact uninstall; default `<cniConfDir>/.meshcni-backup`. */
  backupDir?: string;
  socketPath?: string;
  excludeNamespaces?: readonly string[];
  logLevel?: string;
  /** The shim's deadline for the agent's answer, written into the entry. */
  timeoutSeconds?: number;
  /** The agent's pod index the shim reads during an outage, written into the entry. */
  podIndexPath?: string;
  /**
   * Chain into exactly this file of cniConfDir (waiting for it to appear) instead of the first one
   * the runtime would load: e.g. a Multus delegate conflist in /etc/cni/multus/net.d. '' = first.
   */
  cniConfFileName?: string;
  /**
   * Owned config: write this .conflist of cniConfDir (the primary's plug-ins plus meshcni; it must sort before
   * the primary's file) and never touch the primary's file; rewritten whenever the primary's changes, removed
   * when it goes. '' (default) = chain into the primary's own file.
   */
  ownedConfigFileName?: string;
  /**
   * false: standalone (Multus) mode. meshcni is its own network, cniConfFileName (a .conf) in cniConfDir, that
   * Multus runs for pods which ask for it through a NetworkAttachmentDefinition; no other file is touched.
   */
  chained?: boolean;
  /** Periodic re-check on top of fs.watch (which can miss events on some filesystems). */
  recheckIntervalMs?: number;
  /** Coalesces bursts of directory events into one check. */
  debounceMs?: number;
  /** Told after each check and uninstall whether our entry and shim are in place (the install-ready gauge). */
  onInstallState?: (installed: boolean) => void;
  log?: Logger;
}

type Resolved = Required<Omit<InstallerOptions, 'log'>> & { log: Logger };

export function resolveOptions(o: InstallerOptions): Resolved {
  const cniConfDir = o.cniConfDir ?? '/etc/cni/net.d';
  const named = o.cniConfFileName ?? '';
  if (
    named &&
    (named.includes('/') || named.startsWith('.') || !(CONFIG_EXTENSIONS as readonly string[]).includes(extname(named)))
  ) {
    throw new Error(
      `cniConfFileName ${JSON.stringify(named)} must be a file name in cniConfDir ending in ${CONFIG_EXTENSIONS.join(', ')}`,
    );
  }
  const chained = o.chained ?? true;
  if (!chained && (!named || extname(named) !== '.conf' || o.ownedConfigFileName)) {
    throw new Error(
      `chained false: cniConfFileName ${JSON.stringify(named)} must name meshcni's own .conf (e.g. meshcni.conf), and ownedConfigFileName must be empty`,
    );
  }
  const owned = o.ownedConfigFileName ?? '';
  if (owned && (owned.includes('/') || owned.startsWith('.') || extname(owned) !== '.conflist' || owned === named)) {
    throw new Error(
      `ownedConfigFileName ${JSON.stringify(owned)} must be a .conflist file name in cniConfDir other than cniConfFileName`,
    );
  }
  return {
    cniConfDir,
    cniBinDir: o.cniBinDir ?? '/opt/cni/bin',
    shimPath: o.shimPath ?? join(REPO_ROOT, 'build', 'Release', SHIM_NAME),
    backupDir: o.backupDir ?? join(cniConfDir, BACKUP_DIR_NAME),
    socketPath: o.socketPath ?? '/var/run/meshcni/cni.sock',
    excludeNamespaces: o.excludeNamespaces ?? ['kube-system', 'istio-system'],
    logLevel: o.logLevel ?? 'info',
    timeoutSeconds: o.timeoutSeconds ?? 5,
    podIndexPath: o.podIndexPath ?? '/var/run/meshcni/pod-index',
    cniConfFileName: o.cniConfFileName ?? '',
    ownedConfigFileName: owned,
    chained,
    recheckIntervalMs: o.recheckIntervalMs ?? 5000,
    debounceMs: o.debounceMs ?? 100,
    onInstallState: o.onInstallState ?? (() => undefined),
    log: o.log ?? pino({ level: o.logLevel ?? 'info', base: { component: 'meshcni-install' } }),
  };
}

function isErrno(e: unknown, code: string): boolean {
  return (e as NodeJS.ErrnoException | null)?.code === code;
}

async function readOrNull(path: string): Promise<Buffer | null> {
  try {
    return await readFile(path);
  } catch (e) {
    if (isErrno(e, 'ENOENT')) return null;
    throw e;
  }
}

async function unlinkIfPresent(path: string): Promise<boolean> {
  try {
    await unlink(path);
    return true;
  } catch (e) {
    if (isErrno(e, 'ENOENT')) return false;
    throw e;
  }
}

/** Config, record and shim writes, atomic; our temp names carry TEMP_PREFIX so the config search and watcher skip them. */
export function atomicWrite(path: string, data: Buffer | string, mode: number): Promise<void> {
  return writeFileAtomic(path, data, { mode, tempPrefix: TEMP_PREFIX });
}

export interface ShimCopy {
  path: string;
  /** False when the bin dir already held identical bytes with mode 0755. */
  changed: boolean;
}

/** Copies the shim into the CNI bin dir atomically; skips the write when it is already there. */
export async function installShim(src: string, binDir: string): Promise<ShimCopy> {
  const dest = join(binDir, SHIM_NAME);
  let data: Buffer;
  try {
    data = await readFile(src);
  } catch (e) {
    throw new Error(`cannot read the shim binary ${src}: ${(e as Error).message} (build it with 'npm run build:shim')`);
  }
  const current = await readOrNull(dest);
  if (current && current.equals(data)) {
    const mode = (await stat(dest)).mode & 0o777;
    if (mode !== 0o755) await chmod(dest, 0o755);
    return { path: dest, changed: mode !== 0o755 };
  }
  await mkdir(binDir, { recursive: true });
  await atomicWrite(dest, data, 0o755);
  return { path: dest, changed: true };
}

export async function removeShim(binDir: string): Promise<boolean> {
  return unlinkIfPresent(join(binDir, SHIM_NAME));
}

/**
 * The config file the runtime uses: the lexicographically first `.conflist`/`.conf`/`.json` file
 * (byte order, as libcni sorts). Our temp files and backup directory never qualify. Null when the
 * directory is missing or holds no config yet.
 */
export async function selectPrimaryConfig(confDir: string, exclude = ''): Promise<string | null> {
  let entries;
  try {
    entries = await readdir(confDir, { withFileTypes: true });
  } catch (e) {
    if (isErrno(e, 'ENOENT')) return null;
    throw e;
  }
  const names = entries
    .filter((d) => (d.isFile() || d.isSymbolicLink()) && !d.name.startsWith(TEMP_PREFIX) && d.name !== exclude)
    .map((d) => d.name)
    .filter((n) => (CONFIG_EXTENSIONS as readonly string[]).includes(extname(n)))
    .sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
  return names[0] ?? null;
}

/** What we need to undo one insertion byte for byte. */
interface BackupRecord {
  version: 1;
  /** The file holding our entry. */
  writtenName: string;
  /** sha256 of what we last wrote there: if the file still has it, restoring the original is exact. */
  writtenSha256: string;
  /** The primary's file before we touched it (differs from writtenName after a `.conf` conversion). */
  originalName: string;
  /** The primary's bytes (base64), or null when the file already held a meshcni entry we did not record. */
  original: string | null;
  originalMode: number;
}

const sha256 = (b: Buffer | string): string => createHash('sha256').update(b).digest('hex');

export type CheckOutcome =
  | { state: 'installed'; file: string; wrote: boolean }
  | { state: 'waiting'; reason: string }
  | { state: 'error'; error: Error };

/**
 * Keeps meshcni chained into the node's CNI config for as long as it runs. One check at a time:
 * fs.watch events and the periodic timer only schedule a check, they never write concurrently.
 */
export class CniInstaller {
  readonly opts: Resolved;
  private readonly log: Logger;
  private readonly entry: MeshcniEntry;
  private watcher: FSWatcher | undefined;
  private interval: NodeJS.Timeout | undefined;
  private debounce: NodeJS.Timeout | undefined;
  private chain: Promise<unknown> = Promise.resolve();
  private running = false;
  private lastProblem = '';
  private firstInstall: { resolve: () => void; reject: (e: Error) => void } | undefined;
  private installedFile: string | null = null;
  /** The latest check's outcome, for a caller that gives up waiting to say why. */
  lastOutcome: CheckOutcome | undefined;
  /** The first check that found meshcni chained in: whether it had to write (or it was chained already). */
  firstInstalled: Extract<CheckOutcome, { state: 'installed' }> | undefined;

  constructor(options: InstallerOptions = {}) {
    this.opts = resolveOptions(options);
    this.log = this.opts.log;
    this.entry = meshcniEntry(this.opts);
  }

  /** The config file that holds our entry, once installed. */
  get installed(): string | null {
    return this.installedFile;
  }

  /**
   * Starts watching and resolves once the shim is copied and the entry is in the primary config
   * (waiting as long as it takes for that config to appear and be valid).
   */
  start(): Promise<void> {
    if (this.running) throw new Error('CniInstaller already started');
    this.running = true;
    const done = new Promise<void>((resolve, reject) => {
      this.firstInstall = { resolve, reject };
    });
    this.ensureWatcher();
    this.interval = setInterval(() => {
      this.ensureWatcher();
      this.schedule(0);
    }, this.opts.recheckIntervalMs);
    this.schedule(0);
    return done;
  }

  /** uninstall: unchain on the way out (keeping the shim unless purge, see uninstall()). */
  async stop({ uninstall, purge = false }: { uninstall: boolean; purge?: boolean }): Promise<void> {
    this.running = false;
    this.watcher?.close();
    this.watcher = undefined;
    clearInterval(this.interval);
    clearTimeout(this.debounce);
    this.interval = this.debounce = undefined;
    this.firstInstall?.reject(new Error(`installer stopped before meshcni was chained into ${this.opts.cniConfDir}`));
    this.firstInstall = undefined;
    await this.chain;
    if (uninstall) await this.uninstall({ purge });
  }

  /** One pass: copy the shim, find the primary config, insert or update our entry. Serialized. */
  check(): Promise<CheckOutcome> {
    const next = this.chain.then(() => this.checkOnce());
    this.chain = next.catch(() => undefined);
    return next;
  }

  /**
   * Unchains: restores each recorded config to its original bytes (or, if someone changed it since our write,
   * removes just our entry). The shim stays unless purge: pods added while meshcni was chained are torn down
   * with the config they were added with, and a runtime that cannot find the plug-in leaves them stuck in
   * Terminating (istio/istio#59846); the shim answers their DEL without an agent, and a later install
   * replaces it.
   */
  uninstall({ purge = false }: { purge?: boolean } = {}): Promise<void> {
    const next = this.chain.then(() => this.uninstallOnce(purge));
    this.chain = next.catch(() => undefined);
    return next;
  }

  private ensureWatcher(): void {
    if (this.watcher || !this.running) return;
    try {
      const w = watch(this.opts.cniConfDir, { persistent: false }, (_event, name) => {
        if (name && String(name).startsWith(TEMP_PREFIX)) return; // our own writes in flight
        this.schedule(this.opts.debounceMs);
      });
      w.on('error', (e) => {
        this.log.warn(
          { dir: this.opts.cniConfDir, err: e.message },
          'CNI conf dir watch failed; relying on the periodic re-check',
        );
        w.close();
        if (this.watcher === w) this.watcher = undefined;
      });
      this.watcher = w;
    } catch (e) {
      // Typically the dir does not exist yet; the periodic tick tries again.
      this.log.debug({ dir: this.opts.cniConfDir, err: (e as Error).message }, 'cannot watch the CNI conf dir yet');
    }
  }

  private schedule(delayMs: number): void {
    if (!this.running || this.debounce) return;
    this.debounce = setTimeout(() => {
      this.debounce = undefined;
      if (!this.running) return;
      void this.check();
    }, delayMs);
  }

  private problem(level: 'info' | 'error', fields: Record<string, unknown>, msg: string): void {
    const key = `${msg} ${JSON.stringify(fields)}`;
    if (key === this.lastProblem) {
      this.log.debug(fields, msg);
      return;
    }
    this.lastProblem = key;
    this.log[level](fields, msg);
  }

  private async checkOnce(): Promise<CheckOutcome> {
    const outcome = await this.tryInstall().catch((e: unknown): CheckOutcome => {
      const error = e instanceof Error ? e : new Error(String(e));
      this.problem(
        'error',
        { dir: this.opts.cniConfDir, err: error.message },
        'cannot chain meshcni into the CNI config; will retry',
      );
      return { state: 'error', error };
    });
    this.lastOutcome = outcome;
    this.opts.onInstallState(outcome.state === 'installed');
    if (outcome.state === 'installed') {
      this.lastProblem = '';
      this.firstInstalled ??= outcome;
      this.firstInstall?.resolve();
      this.firstInstall = undefined;
    }
    return outcome;
  }

  private async tryInstall(): Promise<CheckOutcome> {
    const { cniConfDir, cniBinDir, shimPath } = this.opts;
    const shim = await installShim(shimPath, cniBinDir);
    if (shim.changed) this.log.info({ path: shim.path, from: shimPath }, 'installed the meshcni shim');
    if (!this.opts.chained) return this.tryInstallStandalone();
    if (this.opts.ownedConfigFileName) return this.tryInstallOwned();

    const primary = await this.targetConfig();
    if (!primary) {
      const reason = this.opts.cniConfFileName
        ? `${join(cniConfDir, this.opts.cniConfFileName)} does not exist yet`
        : `no .conflist/.conf/.json in ${cniConfDir} yet`;
      this.problem('info', { dir: cniConfDir }, 'waiting for the primary CNI config');
      return { state: 'waiting', reason };
    }
    const primaryPath = join(cniConfDir, primary);
    const bytes = await readOrNull(primaryPath);
    if (!bytes) return { state: 'waiting', reason: `${primaryPath} vanished` };
    // Throws CniConfigError naming the file: logged by checkOnce, the file is left alone.
    const result = insertEntry(primaryPath, bytes.toString('utf8'), this.entry);
    const written = basename(result.fileName);

    if (this.installedFile && this.installedFile !== written) {
      // A new file now sorts first: the runtime no longer reads the old one, so put it back.
      const old = await this.readRecord(this.installedFile);
      if (old) await this.restore(old);
    }
    if (!result.changed) {
      this.installedFile = written;
      return { state: 'installed', file: join(cniConfDir, written), wrote: false };
    }

    const previous = await this.readRecord(written);
    if (result.converted && !previous && (await readOrNull(join(cniConfDir, written)))) {
      throw new CniConfigError(
        primaryPath,
        `converting it would overwrite ${join(cniConfDir, written)}, which meshcni did not write`,
      );
    }
    const mode = (await stat(primaryPath)).mode & 0o777;
    const record: BackupRecord = result.hadEntry
      ? {
          version: 1,
          writtenName: written,
          writtenSha256: sha256(result.text),
          originalName: previous?.originalName ?? primary,
          original: previous?.original ?? null,
          originalMode: previous?.originalMode ?? mode,
        }
      : {
          version: 1,
          writtenName: written,
          writtenSha256: sha256(result.text),
          originalName: primary,
          original: bytes.toString('base64'),
          originalMode: mode,
        };
    // The backup goes first: a crash after it leaves the original recoverable.
    await this.writeRecord(record);
    await atomicWrite(join(cniConfDir, written), result.text, mode);
    if (result.converted) await unlinkIfPresent(primaryPath);
    this.installedFile = written;
    this.log.info(
      {
        file: join(cniConfDir, written),
        from: result.converted ? primaryPath : undefined,
        action: result.hadEntry ? 'updated' : 'inserted',
      },
      'meshcni chained into the CNI config',
    );
    return { state: 'installed', file: join(cniConfDir, written), wrote: true };
  }

  /**
   * Owned mode: our own file holds the primary's config with meshcni chained in; the primary's file is only
   * read. Written again whenever the primary's content changes, removed when the primary goes (the node then
   * has no CNI config, as it would have without meshcni).
   */
  private async tryInstallOwned(): Promise<CheckOutcome> {
    const { cniConfDir, ownedConfigFileName: owned } = this.opts;
    const ownedPath = join(cniConfDir, owned);
    // Chained into the primary's own file by an earlier install: put its exact bytes back first.
    for (const record of await this.readRecords()) await this.restore(record);
    const primary = await this.targetConfig();
    const bytes = primary ? await readOrNull(join(cniConfDir, primary)) : null;
    if (!primary || !bytes) {
      await this.removeOwned('the primary CNI config is gone');
      return { state: 'waiting', reason: `no primary CNI config in ${cniConfDir} yet` };
    }
    const primaryPath = join(cniConfDir, primary);
    if (!this.opts.cniConfFileName && primary < owned) {
      throw new CniConfigError(
        primaryPath,
        `sorts before ${owned}, so the runtime would load it and not meshcni's own config; choose an ownedConfigFileName that sorts first`,
      );
    }
    const { text } = insertEntry(primaryPath, bytes.toString('utf8'), this.entry);
    const current = await readOrNull(ownedPath);
    if (current?.toString('utf8') === text) {
      this.installedFile = owned;
      return { state: 'installed', file: ownedPath, wrote: false };
    }
    if (current && !hasEntryLenient(ownedPath, current))
      throw new CniConfigError(ownedPath, 'exists and is not a meshcni config; refusing to overwrite it');
    await atomicWrite(ownedPath, text, (await stat(primaryPath)).mode & 0o777);
    this.installedFile = owned;
    this.log.info(
      { file: ownedPath, from: primaryPath, action: current ? 'updated' : 'written' },
      'meshcni wrote its own CNI config',
    );
    return { state: 'installed', file: ownedPath, wrote: true };
  }

  /** Standalone mode: meshcni's own single-plug-in network config, named for its file (Multus finds it by name). */
  private async tryInstallStandalone(): Promise<CheckOutcome> {
    const { cniConfDir, cniConfFileName: name } = this.opts;
    const path = join(cniConfDir, name);
    // Multus's own CNI versions vary by release; 0.3.1 is the one every Multus accepts for a delegate.
    const text = `${JSON.stringify({ cniVersion: '0.3.1', name: basename(name, '.conf'), ...this.entry }, null, 2)}\n`;
    const current = await readOrNull(path);
    if (current?.toString('utf8') === text) {
      this.installedFile = name;
      return { state: 'installed', file: path, wrote: false };
    }
    if (current && !isStandaloneMeshcni(current))
      throw new CniConfigError(path, 'exists and is not a meshcni config; refusing to overwrite it');
    await mkdir(cniConfDir, { recursive: true });
    await atomicWrite(path, text, 0o644);
    this.installedFile = name;
    this.log.info(
      { file: path, action: current ? 'updated' : 'written' },
      'meshcni wrote its standalone network config',
    );
    return { state: 'installed', file: path, wrote: true };
  }

  /** Deletes our owned config if it is ours (holds a meshcni entry). */
  private async removeOwned(why: string): Promise<void> {
    const owned = this.opts.ownedConfigFileName;
    if (!owned) return;
    const path = join(this.opts.cniConfDir, owned);
    const current = await readOrNull(path);
    if (!current || !hasEntryLenient(path, current)) return;
    await unlinkIfPresent(path);
    if (this.installedFile === owned) this.installedFile = null;
    this.log.info({ file: path, why }, "removed meshcni's own CNI config");
  }

  /** The file to chain into: the named one when configured (if present), else the runtime's first. */
  private async targetConfig(): Promise<string | null> {
    const named = this.opts.cniConfFileName;
    if (!named) return selectPrimaryConfig(this.opts.cniConfDir, this.opts.ownedConfigFileName);
    // A converted lone config lives on as <stem>.conflist: follow it there.
    for (const name of [named, listFileName(named)])
      if (await readOrNull(join(this.opts.cniConfDir, name))) return name;
    return null;
  }

  private async uninstallOnce(purge: boolean): Promise<void> {
    const { cniConfDir, cniBinDir, backupDir } = this.opts;
    for (const record of await this.readRecords()) await this.restore(record);
    await this.removeOwned('uninstall');
    if (!this.opts.chained) {
      const path = join(cniConfDir, this.opts.cniConfFileName);
      const current = await readOrNull(path);
      if (current && isStandaloneMeshcni(current)) {
        await unlinkIfPresent(path);
        this.log.info({ file: path }, "removed meshcni's standalone network config");
      }
    }
    // A file with our entry but no record (backup dir lost): take out just the entry.
    const primary = await this.targetConfig();
    if (primary) {
      const path = join(cniConfDir, primary);
      const bytes = await readOrNull(path);
      if (bytes && hasEntryLenient(path, bytes)) {
        const { text } = removeEntry(path, bytes.toString('utf8'));
        await atomicWrite(path, text, (await stat(path)).mode & 0o777);
        this.log.warn({ file: path }, 'removed the meshcni entry (no backup of the original bytes)');
      }
    }
    if (!purge)
      this.log.info({ path: join(cniBinDir, SHIM_NAME) }, 'kept the meshcni shim for pods added while chained');
    else if (await removeShim(cniBinDir))
      this.log.info({ path: join(cniBinDir, SHIM_NAME) }, 'removed the meshcni shim');
    await rmdir(backupDir).catch((e: unknown) => {
      if (!isErrno(e, 'ENOENT') && !isErrno(e, 'ENOTEMPTY')) throw e;
    });
    this.installedFile = null;
    this.opts.onInstallState(false);
  }

  private async restore(record: BackupRecord): Promise<void> {
    const { cniConfDir } = this.opts;
    const writtenPath = join(cniConfDir, record.writtenName);
    const current = await readOrNull(writtenPath);
    if (!current) {
      this.log.info({ file: writtenPath }, 'config we wrote is gone; nothing to restore');
    } else if (record.original !== null && sha256(current) === record.writtenSha256) {
      const originalPath = join(cniConfDir, record.originalName);
      await atomicWrite(originalPath, Buffer.from(record.original, 'base64'), record.originalMode);
      if (record.originalName !== record.writtenName) await unlinkIfPresent(writtenPath);
      this.log.info({ file: originalPath }, 'restored the primary CNI config to its original bytes');
    } else if (hasEntryLenient(writtenPath, current)) {
      // Changed since our write (or no original kept): keep their changes, drop only our entry.
      const { text } = removeEntry(writtenPath, current.toString('utf8'));
      await atomicWrite(writtenPath, text, (await stat(writtenPath)).mode & 0o777);
      this.log.warn({ file: writtenPath }, 'config changed since meshcni wrote it; removed only the meshcni entry');
    }
    await unlinkIfPresent(this.recordPath(record.writtenName));
    if (this.installedFile === record.writtenName) this.installedFile = null;
  }

  private recordPath(writtenName: string): string {
    return join(this.opts.backupDir, `${writtenName}.json`);
  }

  private async readRecord(writtenName: string): Promise<BackupRecord | null> {
    const raw = await readOrNull(this.recordPath(writtenName));
    if (!raw) return null;
    return parseRecord(this.recordPath(writtenName), raw.toString('utf8'));
  }

  private async readRecords(): Promise<BackupRecord[]> {
    let names: string[];
    try {
      names = await readdir(this.opts.backupDir);
    } catch (e) {
      if (isErrno(e, 'ENOENT')) return [];
      throw e;
    }
    const out: BackupRecord[] = [];
    for (const n of names.filter((x) => x.endsWith('.json')).sort()) {
      const raw = await readFile(join(this.opts.backupDir, n), 'utf8');
      out.push(parseRecord(join(this.opts.backupDir, n), raw));
    }
    return out;
  }

  private async writeRecord(record: BackupRecord): Promise<void> {
    await mkdir(this.opts.backupDir, { recursive: true, mode: 0o700 });
    await atomicWrite(this.recordPath(record.writtenName), JSON.stringify(record, null, 2) + '\n', 0o600);
  }
}

function parseRecord(path: string, text: string): BackupRecord {
  let r: unknown;
  try {
    r = JSON.parse(text);
  } catch (e) {
    throw new Error(`meshcni backup record ${path} is malformed: ${(e as Error).message}`);
  }
  const o = r as Partial<BackupRecord> | null;
  if (
    !o ||
    o.version !== 1 ||
    typeof o.writtenName !== 'string' ||
    typeof o.writtenSha256 !== 'string' ||
    typeof o.originalName !== 'string' ||
    !(typeof o.original === 'string' || o.original === null) ||
    typeof o.originalMode !== 'number'
  ) {
    throw new Error(`meshcni backup record ${path} is not a version 1 record`);
  }
  return o as BackupRecord;
}

/** hasEntry, but a file we cannot parse simply has no entry of ours to remove. */
/** A lone network config whose plug-in is meshcni (what standalone mode writes). */
function isStandaloneMeshcni(bytes: Buffer): boolean {
  try {
    const doc = JSON.parse(bytes.toString('utf8')) as unknown;
    return typeof doc === 'object' && doc !== null && (doc as { type?: unknown }).type === SHIM_NAME;
  } catch {
    return false;
  }
}

function hasEntryLenient(path: string, bytes: Buffer): boolean {
  try {
    return hasEntry(path, bytes.toString('utf8'));
  } catch (e) {
    if (e instanceof CniConfigError) return false;
    throw e;
  }
}

export interface RunInstallOptions extends InstallerOptions {
  /** Give up waiting for the primary config after this long; default: wait forever. */
  waitTimeoutMs?: number;
  /**
   * Chain in even when no agent answers on socketPath (default false: refuse). Until an agent serves, every
   * new pod that is not excluded then fails its ADD with "try again later".
   */
  withoutAgent?: boolean;
}

export interface InstallResult {
  shim: string;
  config: string;
  /** meshcni was already chained into that file with this entry; nothing was written. */
  alreadyChained: boolean;
}

export class InstallRefusedError extends Error {
  constructor(socketPath: string) {
    super(
      `no meshcni agent answers on ${socketPath}: chaining meshcni in now would fail every new pod that is not ` +
        'excluded; start `meshcni-agent serve` first, or pass --without-agent to chain in anyway',
    );
    this.name = 'InstallRefusedError';
  }
}

/**
 * `meshcni-agent install`: copy the shim, wait for the primary config, chain in once, return. Refuses while no
 * agent answers (unless withoutAgent); when it fails it removes the shim it copied, leaving the node as it was.
 */
export async function runInstall(opts: RunInstallOptions): Promise<InstallResult> {
  const installer = new CniInstaller(opts);
  const { socketPath, cniBinDir } = installer.opts;
  if (!opts.withoutAgent && !(await agentAnswers(socketPath))) throw new InstallRefusedError(socketPath);
  const hadShim = (await readOrNull(join(cniBinDir, SHIM_NAME))) !== null;
  let timer: NodeJS.Timeout | undefined;
  const started = installer.start();
  try {
    if (opts.waitTimeoutMs !== undefined) {
      const ms = opts.waitTimeoutMs;
      await Promise.race([
        started,
        new Promise<never>((_, reject) => {
          timer = setTimeout(() => {
            const last = installer.lastOutcome;
            const why =
              last?.state === 'error'
                ? last.error.message
                : last?.state === 'waiting'
                  ? last.reason
                  : 'no check finished';
            reject(
              new Error(
                `no valid primary CNI config in ${installer.opts.cniConfDir} after ${ms} ms (last check: ${why})`,
              ),
            );
          }, ms);
        }),
      ]);
    } else {
      await started;
    }
  } catch (e) {
    // Not chained in: a shim we copied would only be a stray binary in the runtime's plug-in dir.
    await installer.stop({ uninstall: false });
    if (!hadShim && (await removeShim(cniBinDir)))
      installer.opts.log.info({ path: join(cniBinDir, SHIM_NAME) }, 'install failed: removed the shim it copied');
    throw e;
  } finally {
    clearTimeout(timer);
    started.catch(() => undefined);
  }
  await installer.stop({ uninstall: false });
  return {
    shim: join(cniBinDir, SHIM_NAME),
    config: join(installer.opts.cniConfDir, installer.installed ?? ''),
    alreadyChained: installer.firstInstalled?.wrote === false,
  };
}

/** `meshcni-agent uninstall`: unchain exactly what install added; with purge, remove the shim too. */
export async function runUninstall(opts: InstallerOptions & { purge?: boolean }): Promise<void> {
  await new CniInstaller(opts).uninstall({ purge: opts.purge ?? false });
}
