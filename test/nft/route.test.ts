// TPROXY's policy routing and the ::6 loopback address, programmed over rtnetlink and read back
// with iproute2 (the oracle). Root, real netns.
import { afterEach, describe, expect, it } from 'vitest';
import { applyRouting } from '../../src/nft/apply.js';
import { routingBatch } from '../../src/rtnetlink/route.js';
import { NetnsPool, inNetns, netnsPath } from '../helpers/netns.js';

const pool = new NetnsPool('rt');
afterEach(() => pool.cleanup());

describe('routing for captured pods', () => {
  it('encodes nothing for an empty plan', () => {
    expect(routingBatch({})).toBeNull();
  });

  it('adds the fwmark rule and local route for both families, and ::6 on lo, idempotently', async () => {
    const ns = pool.create();
    const plan = { tproxy: { mark: 1337, table: 133, families: [4, 6] as (4 | 6)[] }, loopbackAddresses: ['::6/128'] };
    await applyRouting(netnsPath(ns), plan);
    await applyRouting(netnsPath(ns), plan);
    const rules4 = inNetns(ns, 'ip', ['-4', 'rule', 'show']);
    const rules6 = inNetns(ns, 'ip', ['-6', 'rule', 'show']);
    expect(rules4.match(/fwmark 0x539 lookup 133/g)).toHaveLength(1);
    expect(rules6.match(/fwmark 0x539 lookup 133/g)).toHaveLength(1);
    expect(inNetns(ns, 'ip', ['-4', 'route', 'show', 'table', '133'])).toMatch(/^local default dev lo/m);
    expect(inNetns(ns, 'ip', ['-6', 'route', 'show', 'table', '133'])).toMatch(/^local default dev lo/m);
    expect(inNetns(ns, 'ip', ['-6', 'addr', 'show', 'dev', 'lo'])).toMatch(/inet6 ::6\/128/);
  });

  it('rejects an invalid address before sending anything', async () => {
    const ns = pool.create();
    await expect(applyRouting(netnsPath(ns), { loopbackAddresses: ['10.0.0.1/33'] })).rejects.toThrow(
      /10\.0\.0\.1\/33/,
    );
    expect(inNetns(ns, 'ip', ['-4', 'addr', 'show', 'dev', 'lo'])).not.toMatch(/10\.0\.0\.1/);
  });
});
