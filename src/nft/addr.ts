// IPv4/IPv6 addresses and prefixes as bytes (network order), with errors that name the input.
import { isIPv4, isIPv6 } from 'node:net';

export interface Prefix {
  family: 4 | 6;
  /** The address with host bits cleared, network byte order (4 or 16 bytes). */
  addr: Buffer;
  /** Prefix length in bits. */
  bits: number;
  /** Netmask bytes for `bits`. */
  mask: Buffer;
}

export function ipv4Bytes(text: string): Buffer {
  if (!isIPv4(text)) throw new Error(`'${text}' is not an IPv4 address`);
  return Buffer.from(text.split('.').map(Number));
}

export function ipv6Bytes(text: string): Buffer {
  if (!isIPv6(text)) throw new Error(`'${text}' is not an IPv6 address`);
  let s = text;
  const out = Buffer.alloc(16);
  // A trailing dotted quad (::ffff:1.2.3.4) becomes two hex groups.
  const lastColon = s.lastIndexOf(':');
  const tail = s.slice(lastColon + 1);
  if (tail.includes('.')) {
    const v4 = ipv4Bytes(tail);
    s = `${s.slice(0, lastColon + 1)}${v4.readUInt16BE(0).toString(16)}:${v4.readUInt16BE(2).toString(16)}`;
  }
  const [head = '', rest] = s.split('::');
  const headGroups = head === '' ? [] : head.split(':');
  const restGroups = rest === undefined || rest === '' ? [] : rest.split(':');
  const groups =
    rest === undefined
      ? headGroups
      : [...headGroups, ...Array<string>(8 - headGroups.length - restGroups.length).fill('0'), ...restGroups];
  groups.forEach((g, i) => out.writeUInt16BE(parseInt(g, 16), i * 2));
  return out;
}

export function maskBytes(bits: number, len: number): Buffer {
  const m = Buffer.alloc(len);
  for (let i = 0; i < len; i++) {
    const b = Math.max(0, Math.min(8, bits - i * 8));
    m[i] = b === 0 ? 0 : (0xff << (8 - b)) & 0xff;
  }
  return m;
}

/** Parses `A.B.C.D[/N]` or `X::Y[/N]` (no length = host prefix). Host bits are cleared. */
export function parsePrefix(text: string): Prefix {
  const [addrText = '', bitsText, extra] = text.trim().split('/');
  if (extra !== undefined) throw new Error(`'${text}' is not an IP prefix`);
  const family: 4 | 6 = isIPv4(addrText)
    ? 4
    : isIPv6(addrText)
      ? 6
      : (() => {
          throw new Error(`'${text}' is not an IPv4 or IPv6 prefix`);
        })();
  const len = family === 4 ? 4 : 16;
  const max = len * 8;
  let bits = max;
  if (bitsText !== undefined) {
    if (!/^\d{1,3}$/.test(bitsText) || Number(bitsText) > max) {
      throw new Error(`'${text}' has an invalid prefix length (0-${max})`);
    }
    bits = Number(bitsText);
  }
  const raw = family === 4 ? ipv4Bytes(addrText) : ipv6Bytes(addrText);
  const mask = maskBytes(bits, len);
  const addr = Buffer.alloc(len);
  for (let i = 0; i < len; i++) addr[i] = raw[i]! & mask[i]!;
  return { family, addr, bits, mask };
}

export function formatAddr(bytes: Buffer): string {
  if (bytes.length === 4) return [...bytes].join('.');
  const groups: string[] = [];
  for (let i = 0; i < 16; i += 2) groups.push(bytes.readUInt16BE(i).toString(16));
  // Compress the longest run of zero groups (RFC 5952).
  let best = -1;
  let bestLen = 0;
  for (let i = 0; i < 8;) {
    let j = i;
    while (j < 8 && groups[j] === '0') j++;
    if (j - i > bestLen && j - i > 1) {
      best = i;
      bestLen = j - i;
    }
    i = j === i ? i + 1 : j;
  }
  if (best === -1) return groups.join(':');
  return `${groups.slice(0, best).join(':')}::${groups.slice(best + bestLen).join(':')}`;
}

export const formatPrefix = (p: Prefix): string => `${formatAddr(p.addr)}/${p.bits}`;
