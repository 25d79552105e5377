// Netlink dumps are bounded per network namespace (issue 22): a namespace whose nftables dump to more
// than the limit fails the read with E2BIG and an error naming the path and the limit, instead of
// growing the agent's heap; under the limit everything is read. Root, real network namespaces.
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { MAX_DUMP_BYTES, netlinkDumps, NETLINK_NETFILTER } from '../../src/kernel/index.js';
import { readTables } from '../../src/nft/apply.js';
import { writeDumpRequest } from '../../src/nft/messages.js';
import { NetlinkWriter } from '../../src/nft/netlink.js';
import { NetnsPool, inNetns, netnsPath } from '../helpers/netns.js';

const pool = new NetnsPool('nb');
afterEach(() => pool.cleanup());
afterAll(() => pool.cleanup());

/** A namespace with one ip table holding a set of `n` IPv4 addresses. */
function namespaceWithSet(n: number): string {
  const ns = pool.create();
  const elements = Array.from({ length: n }, (_, i) => `10.${(i >> 16) & 255}.${(i >> 8) & 255}.${i & 255}`).join(', ');
  const ruleset = `table ip big {\n  set s {\n    type ipv4_addr\n    elements = { ${elements} }\n  }\n}\n`;
  inNetns(ns, 'nft', ['-f', '-'], ruleset);
  return ns;
}

const tableDump = (): Buffer => {
  const w = new NetlinkWriter(64);
  writeDumpRequest(w, 'GETTABLE', 1, 'unspec');
  return w.toBuffer();
};

describe('netlink dump bound', () => {
  it('reads a set of 3,000 elements whole under the default limit', async () => {
    const ns = namespaceWithSet(3000);
    const tables = await readTables(netnsPath(ns));
    const set = tables.flatMap((t) => t.sets).find((s) => s.name === 's');
    expect(set?.elements).toHaveLength(3000);
    expect(MAX_DUMP_BYTES).toBe(32 * 1024 * 1024);
  });

  const limits = [
    { name: 'the set elements', maxDumpBytes: 16 * 1024 },
    { name: 'the tables themselves', maxDumpBytes: 16 },
  ];
  for (const c of limits) {
    it(`fails the read with E2BIG naming the path and limit when ${c.name} pass ${c.maxDumpBytes} bytes`, async () => {
      const ns = namespaceWithSet(3000);
      const read = readTables(netnsPath(ns), { maxDumpBytes: c.maxDumpBytes });
      const err = (await read.catch((e: unknown) => e)) as Error & { code?: string };
      expect(err).toBeInstanceOf(Error);
      expect(err.code).toBe('E2BIG');
      expect(err.message).toContain(netnsPath(ns));
      expect(err.message).toContain(`more than ${c.maxDumpBytes} bytes`);
    });
  }

  it('bounds every request of one call together, at the addon', async () => {
    const ns = namespaceWithSet(10);
    const one = await netlinkDumps(netnsPath(ns), [tableDump()], NETLINK_NETFILTER);
    const size = one[0]!.length;
    expect(size).toBeGreaterThan(0);
    await expect(netlinkDumps(netnsPath(ns), [tableDump()], NETLINK_NETFILTER, size)).resolves.toHaveLength(1);
    const both = netlinkDumps(netnsPath(ns), [tableDump(), tableDump()], NETLINK_NETFILTER, size * 2 - 1);
    await expect(both).rejects.toMatchObject({ code: 'E2BIG' });
  });
});
