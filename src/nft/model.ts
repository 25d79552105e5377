// nftables objects as plain data: tables, chains, sets, rules and their expressions.
import type { CmpOp, CtKey, HookName, MetaKey, PayloadBase, TableFamily, VerdictCode } from './constants.js';

export interface Table {
  family: TableFamily;
  name: string;
  flags?: number;
  handle?: bigint;
}

export interface BaseChainHook {
  hook: HookName;
  priority: number;
  type: 'filter' | 'nat' | 'route';
  policy?: 'accept' | 'drop';
}

export interface Chain {
  family: TableFamily;
  table: string;
  name: string;
  /** Present for base chains only. */
  base?: BaseChainHook;
  handle?: bigint;
}

export type Verdict = { code: Exclude<VerdictCode, 'jump' | 'goto'> } | { code: 'jump' | 'goto'; chain: string };

export type Expr =
  | { type: 'meta'; key: MetaKey; dreg: number }
  | { type: 'meta_set'; key: MetaKey; sreg: number }
  | { type: 'payload'; base: PayloadBase; offset: number; len: number; dreg: number }
  | { type: 'cmp'; sreg: number; op: CmpOp; data: Buffer }
  | { type: 'bitwise'; sreg: number; dreg: number; len: number; mask: Buffer; xor: Buffer }
  | { type: 'immediate'; dreg: number; data: Buffer }
  | { type: 'verdict'; verdict: Verdict }
  | { type: 'counter'; bytes: bigint; packets: bigint }
  | { type: 'redir'; regProtoMin?: number; regProtoMax?: number; flags?: number }
  | { type: 'tproxy'; family: TableFamily | 'unspec'; regAddr?: number; regPort?: number }
  | { type: 'ct'; key: CtKey; dreg: number; direction?: number }
  | { type: 'ct_set'; key: CtKey; sreg: number; direction?: number }
  | { type: 'lookup'; set: string; sreg: number; dreg?: number; invert?: boolean; setId?: number }
  | { type: 'match'; name: string; rev: number; info: Buffer }
  | { type: 'target'; name: string; rev: number; info: Buffer };

export type ExprType = Expr['type'];

export interface Rule {
  family: TableFamily;
  table: string;
  chain: string;
  exprs: Expr[];
  /** x_tables compatibility info (protocol for compat matches), as iptables-nft sends it. */
  compat?: { proto: number; flags: number };
  userdata?: Buffer;
  handle?: bigint;
}

export interface SetElement {
  key: Buffer;
  flags?: number;
}

export interface NftSet {
  family: TableFamily;
  table: string;
  name: string;
  flags: number;
  keyType: number;
  keyLen: number;
  /** Unique within a transaction; lets rules in the same batch refer to a new set. */
  id?: number;
  elements: SetElement[];
  handle?: bigint;
}

/** Everything that lives in one table. */
export interface TableContents {
  table: Table;
  chains: Chain[];
  sets: NftSet[];
  rules: Rule[];
}

/** `family name` labels as the agent records them (`ip nat`, `inet istio-proxy-nat`). */
export function tableLabels(tables: readonly { table: Table }[]): string[] {
  return tables.map((t) => `${t.table.family} ${t.table.name}`);
}
