// Removes tables a pod was given (CNI DEL): one transaction, absent tables are not an error.
import { applyNetlinkBatch } from '../kernel/index.js';
import { FAMILY, type TableFamily } from './constants.js';
import type { Table } from './model.js';
import { deleteTablesBatch } from './transaction.js';

/** `family name` labels as the agent records them (`ip nat`, `inet istio-proxy-nat`). */
export function tableLabels(tables: readonly { table: Table }[]): string[] {
  return tables.map((t) => `${t.table.family} ${t.table.name}`);
}

/** Deletes the labelled tables from the namespace in one transaction. Throws naming a bad label. */
export async function removeTables(netnsPath: string, labels: readonly string[]): Promise<void> {
  if (labels.length === 0) return;
  const tables = labels.map((l) => {
    const [family, name, extra] = l.split(' ');
    if (!family || !name || extra !== undefined || family === 'unspec' || !(family in FAMILY)) throw new Error(`table label '${l}' is not 'family name'`);
    return { family: family as TableFamily, name };
  });
  await applyNetlinkBatch(netnsPath, deleteTablesBatch(tables).buffer);
}
