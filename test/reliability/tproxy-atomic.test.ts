// TPROXY needs rtnetlink (fwmark rule, local route, ::6 on lo) beside the nftables transaction;
// when the transaction fails, exactly what the attempt added is taken back. Real netns, root.
import { afterEach, describe, expect, it } from 'vitest';
import { applyPlan } from '../../src/agent/agent.js';
import type { TableContents } from '../../src/nft/model.js';
import { NetnsPool, inNetns, netnsPath } from '../helpers/netns.js';

const pool = new NetnsPool('rtp');
afterEach(() => pool.cleanup());

/** A table the kernel refuses: its only rule jumps to a chain that does not exist. */
const REFUSED: TableContents[] = [
  {
    table: { family: 'ip', name: 'mangle' },
    chains: [
      {
        family: 'ip',
        table: 'mangle',
        name: 'PREROUTING',
        base: { type: 'filter', hook: 'prerouting', priority: -150, policy: 'accept' },
      },
    ],
    sets: [],
    rules: [
      {
        family: 'ip',
        table: 'mangle',
        chain: 'PREROUTING',
        exprs: [{ type: 'verdict', verdict: { code: 'jump', chain: 'NO_SUCH_CHAIN' } }],
      },
    ],
  },
];
const ROUTING = { tproxy: { mark: 1337, table: 133, families: [4, 6] as (4 | 6)[] }, loopbackAddresses: ['::6/128'] };

function routingState(ns: string): string {
  return [
    inNetns(ns, 'ip', ['-4', 'rule', 'show']),
    inNetns(ns, 'ip', ['-6', 'rule', 'show']),
    inNetns(ns, 'ip', ['-4', 'route', 'show', 'table', 'all']),
    inNetns(ns, 'ip', ['-6', 'route', 'show', 'table', 'all']),
    inNetns(ns, 'ip', ['addr', 'show', 'dev', 'lo']),
  ].join('\n');
}

describe('TPROXY routing and the nftables transaction, all or nothing', () => {
  it('removes the fwmark rules, the table-133 routes and ::6 it added when the transaction fails', async () => {
    const ns = pool.create();
    const before = routingState(ns);
    await expect(
      applyPlan(netnsPath(ns), { capture: true, layout: 'iptables', tables: REFUSED, summary: {}, routing: ROUTING }),
    ).rejects.toThrow(/NO_SUCH_CHAIN|ENOENT/);
    expect(routingState(ns)).toBe(before);
    expect(inNetns(ns, 'nft', ['list', 'tables']).trim()).toBe('');
  });

  it('leaves routing that was there before the attempt', async () => {
    const ns = pool.create();
    inNetns(ns, 'ip', ['-4', 'rule', 'add', 'pref', '32765', 'fwmark', '1337', 'lookup', '133']);
    inNetns(ns, 'ip', ['-6', 'addr', 'add', '::6/128', 'dev', 'lo']);
    const before = routingState(ns);
    expect(before).toMatch(/fwmark 0x539 lookup 133/);
    await expect(
      applyPlan(netnsPath(ns), { capture: true, layout: 'iptables', tables: REFUSED, summary: {}, routing: ROUTING }),
    ).rejects.toThrow();
    expect(routingState(ns)).toBe(before);
  });
});
