// The TypeScript face of the native addon: typed, promise-based, nothing else. No other module
// loads the addon; everything that crosses into the kernel goes through these functions.
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';
import { join } from 'node:path';
import { arch, platform } from 'node:os';

interface NetlinkErrorDetail {
  index: number;
  seq: number;
  errno: number;
  code: string;
  extack: string;
}

interface Addon {
  applyBatch(path: string, batch: Buffer, protocol?: number): Promise<{ messages: number; acked: number }>;
  applyBatchInline(path: string, batch: Buffer, protocol?: number): { messages: number; acked: number };
  dump(path: string, requests: Buffer[], protocol: number, maxBytes: number): Promise<Buffer[]>;
  netnsIdentity(path: string): { dev: bigint; ino: bigint };
  checkPodNetns(path: string): void;
  netnsOwner(path: string): { dev: bigint; ino: bigint };
  peerCredentials(fd: number): { pid: number; uid: number; gid: number };
  NETLINK_ROUTE: number;
  NETLINK_NETFILTER: number;
}

/**
 * The package root, fixed by this module's own place in it: `src/kernel/index.ts` and
 * `dist/kernel/index.js` both sit two levels below it. No search: a layout that lacks some marker
 * file (an image without binding.gyp) must not change where the addon is looked for.
 */
export const PACKAGE_ROOT = fileURLToPath(new URL('../../', import.meta.url));

/** Where node-gyp-build looks, in its order, for the error message. */
function addonLocations(root: string): string[] {
  return [join(root, 'build', 'Release', '*.node'), join(root, 'prebuilds', `${platform()}-${arch()}`, '*.node')];
}

/** The addon failed to load: names the places searched and the loader's own error. */
export class AddonLoadError extends Error {
  constructor(
    readonly root: string,
    readonly looked: string[],
    readonly loaderError: Error,
  ) {
    super(
      `cannot load the meshcni native addon (looked for ${looked.join(' and ')}): ${loaderError.message.split('\n')[0]!.trim()}`,
    );
    this.name = 'AddonLoadError';
  }
}

let addon: Addon | undefined;
function native(): Addon {
  if (!addon) {
    const require = createRequire(import.meta.url);
    const load = require('node-gyp-build') as (root: string) => Addon;
    try {
      addon = load(PACKAGE_ROOT);
    } catch (e) {
      throw new AddonLoadError(
        PACKAGE_ROOT,
        addonLocations(PACKAGE_ROOT),
        e instanceof Error ? e : new Error(String(e)),
      );
    }
  }
  return addon;
}

/**
 * Loads the addon now (it is otherwise loaded on first use) so a daemon can refuse to start, with
 * an AddonLoadError, instead of failing every request later.
 */
export function loadAddon(): void {
  native();
}

/** A system call or refusal from the addon: `code` is the errno name or ENOTNETNS / EHOSTNETNS. */
export interface KernelError extends Error {
  code: string;
  errno: number;
}

/** The kernel rejected a message of a batch. `index` counts messages from 0 (the batch begin). */
export class NetlinkBatchError extends Error {
  readonly index: number;
  readonly seq: number;
  readonly errno: number;
  readonly code: string;
  readonly extack: string;
  readonly errors: NetlinkErrorDetail[];
  constructor(raw: Error & NetlinkErrorDetail & { errors: NetlinkErrorDetail[] }) {
    super(raw.message);
    this.name = 'NetlinkBatchError';
    this.index = raw.index;
    this.seq = raw.seq;
    this.errno = raw.errno;
    this.code = raw.code;
    this.extack = raw.extack;
    this.errors = raw.errors;
  }
}

/** The addon's kernel refusal as a NetlinkBatchError; anything else as it is. */
function typedBatchError(e: unknown): unknown {
  if (e instanceof Error && e.name === 'NetlinkBatchError')
    return new NetlinkBatchError(e as Error & NetlinkErrorDetail & { errors: NetlinkErrorDetail[] });
  return e;
}

export const NETLINK_NETFILTER = 12;
export const NETLINK_ROUTE = 0;

/**
 * Sends a netlink batch in the network namespace at `netnsPath` and waits for every ACK. The socket
 * is created inside the namespace by a worker thread that enters it and returns at once; the host's
 * own namespace is refused (code EHOSTNETNS). Rejects with NetlinkBatchError when the kernel refuses
 * a message (for nf_tables batches: then nothing of the batch was applied).
 */
export async function applyNetlinkBatch(
  netnsPath: string,
  batch: Buffer,
  protocol: number = NETLINK_NETFILTER,
): Promise<{ messages: number; acked: number }> {
  try {
    return await native().applyBatch(netnsPath, batch, protocol);
  } catch (e) {
    throw typedBatchError(e);
  }
}

/**
 * applyNetlinkBatch on the calling thread: no thread-pool hop, whose two cross-thread wake-ups
 * cost more than a small commit (bench/phases.ts), but the event loop waits for the kernel. Only
 * for small batches; throws what applyNetlinkBatch rejects with.
 */
export function applyNetlinkBatchInline(
  netnsPath: string,
  batch: Buffer,
  protocol: number = NETLINK_NETFILTER,
): { messages: number; acked: number } {
  try {
    return native().applyBatchInline(netnsPath, batch, protocol);
  } catch (e) {
    throw typedBatchError(e);
  }
}

/**
 * The most reply bytes read from one network namespace by one netlinkDumps call (all its requests
 * together). A namespace whose tables dump to more (600 k set elements cost about 145 MB of heap)
 * fails with E2BIG instead of growing the agent towards its memory limit.
 */
export const MAX_DUMP_BYTES = 32 * 1024 * 1024;

/**
 * Runs dump requests in the namespace, one after another on one socket; returns each one's replies.
 * Rejects with code E2BIG once the replies would exceed `maxBytes` together.
 */
export function netlinkDumps(
  netnsPath: string,
  requests: Buffer[],
  protocol: number = NETLINK_NETFILTER,
  maxBytes: number = MAX_DUMP_BYTES,
): Promise<Buffer[]> {
  return native().dump(netnsPath, requests, protocol, maxBytes);
}

/** Runs one dump request in the namespace; resolves with every reply message (NLMSG_DONE excluded). */
export async function netlinkDump(
  netnsPath: string,
  request: Buffer,
  protocol: number = NETLINK_NETFILTER,
): Promise<Buffer> {
  const [reply] = await netlinkDumps(netnsPath, [request], protocol);
  return reply ?? Buffer.alloc(0);
}

/** The identity (device + inode of the nsfs file) of the namespace at `path`. Throws ENOENT / ENOTNETNS. */
export function netnsIdentity(path: string): { dev: bigint; ino: bigint } {
  return native().netnsIdentity(path);
}

/** Identity of the namespace this process runs in (the host's, for the agent). */
export function ownNetnsIdentity(): { dev: bigint; ino: bigint } {
  return native().netnsIdentity('/proc/self/ns/net');
}

/** Throws unless `path` is a network namespace that is not the host's own (ENOENT, ENOTNETNS, EHOSTNETNS). */
export function checkPodNetns(path: string): void {
  native().checkPodNetns(path);
}

/**
 * Identity of the user namespace that owns the network namespace at `path` (NS_GET_USERNS): a pod's
 * netns is owned by the initial user namespace, one a non-root user made is not. Throws naming the path.
 */
export function netnsOwner(path: string): { dev: bigint; ino: bigint } {
  return native().netnsOwner(path);
}

/** uid/gid/pid of the process on the other end of a connected unix socket (SO_PEERCRED). */
export function peerCredentials(fd: number): { pid: number; uid: number; gid: number } {
  return native().peerCredentials(fd);
}
