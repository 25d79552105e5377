// Replacing a file so readers see the old or the new bytes, never a part: shared by the agent (pod
// index) and the installer (CNI config, shim). No project imports: any room may use it.
import { randomBytes } from 'node:crypto';
import { open, readdir, rename, unlink } from 'node:fs/promises';
import { dirname, join } from 'node:path';

export interface AtomicWriteOptions {
  /** The final mode, set after the umask had its say. */
  mode: number;
  /** Temp file name = prefix + random hex + suffix, in the target's directory (readers skip these). */
  tempPrefix: string;
  tempSuffix?: string;
}

async function unlinkQuietly(path: string): Promise<void> {
  await unlink(path).catch(() => undefined);
}

/**
 * Temp file in the same directory (exclusive create), write, chmod, fsync, rename over the target,
 * fsync the directory. On any failure the temp file is removed and the target is untouched.
 */
export async function writeFileAtomic(path: string, data: Buffer | string, opts: AtomicWriteOptions): Promise<void> {
  const dir = dirname(path);
  const tmp = join(dir, `${opts.tempPrefix}${randomBytes(6).toString('hex')}${opts.tempSuffix ?? ''}`);
  const fh = await open(tmp, 'wx', opts.mode);
  try {
    await fh.writeFile(data);
    await fh.chmod(opts.mode); // the umask may have narrowed the open() mode
    await fh.sync();
  } catch (e) {
    await fh.close().catch(() => undefined);
    await unlinkQuietly(tmp);
    throw e;
  }
  await fh.close();
  try {
    await rename(tmp, path);
  } catch (e) {
    await unlinkQuietly(tmp);
    throw e;
  }
  const dh = await open(dir, 'r');
  try {
    await dh.sync();
  } finally {
    await dh.close();
  }
}

/**
 * Removes the temp files a killed writer left in `dir` (names with this prefix and suffix); returns
 * their names. Only at start, before any write of ours is in flight.
 */
export async function removeStaleTemps(dir: string, tempPrefix: string, tempSuffix = ''): Promise<string[]> {
  let names: string[];
  try {
    names = await readdir(dir);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return [];
    throw e;
  }
  const stale = names.filter(
    (n) => n.startsWith(tempPrefix) && n.endsWith(tempSuffix) && n.length > tempPrefix.length + tempSuffix.length,
  );
  for (const n of stale) await unlinkQuietly(join(dir, n));
  return stale;
}
