// Netlink framing: attribute (TLV) writing and reading, message headers. Knows bytes, not nftables.

export const NLMSG_HDRLEN = 16;
export const NFGENMSG_LEN = 4;
export const NLA_HDRLEN = 4;
export const NLA_F_NESTED = 0x8000;
const NLA_TYPE_MASK = 0x3fff;

export const NLM_F_REQUEST = 0x01;
export const NLM_F_MULTI = 0x02;
export const NLM_F_ACK = 0x04;
export const NLM_F_DUMP = 0x300;
export const NLM_F_REPLACE = 0x100;
export const NLM_F_EXCL = 0x200;
export const NLM_F_CREATE = 0x400;
export const NLM_F_APPEND = 0x800;

export const NLMSG_ERROR = 0x2;
export const NLMSG_DONE = 0x3;

export const align4 = (n: number): number => (n + 3) & ~3;

/**
 * Builds netlink messages into one growing buffer. Nesting patches lengths in place, so a whole
 * batch is written with no intermediate buffers.
 */
export class NetlinkWriter {
  private buf: Buffer;
  private pos = 0;
  private readonly open: number[] = [];

  constructor(initialSize = 4096) {
    this.buf = Buffer.allocUnsafe(initialSize);
  }

  get length(): number {
    return this.pos;
  }

  private reserve(n: number): void {
    if (this.pos + n <= this.buf.length) return;
    let size = this.buf.length * 2;
    while (size < this.pos + n) size *= 2;
    const next = Buffer.allocUnsafe(size);
    this.buf.copy(next, 0, 0, this.pos);
    this.buf = next;
  }

  private pad(): void {
    const target = align4(this.pos);
    this.reserve(target - this.pos);
    while (this.pos < target) this.buf[this.pos++] = 0;
  }

  /** Starts a message: nlmsghdr + nfgenmsg. Returns its start offset. */
  beginMessage(type: number, flags: number, seq: number, family: number, resId = 0): number {
    this.reserve(NLMSG_HDRLEN + NFGENMSG_LEN);
    const start = this.pos;
    this.buf.writeUInt32LE(0, start);
    this.buf.writeUInt16LE(type, start + 4);
    this.buf.writeUInt16LE(flags, start + 6);
    this.buf.writeUInt32LE(seq >>> 0, start + 8);
    this.buf.writeUInt32LE(0, start + 12);
    this.buf.writeUInt8(family, start + 16);
    this.buf.writeUInt8(0, start + 17);
    this.buf.writeUInt16BE(resId, start + 18);
    this.pos += NLMSG_HDRLEN + NFGENMSG_LEN;
    this.open.push(start);
    return start;
  }

  endMessage(): void {
    const start = this.open.pop();
    if (start === undefined) throw new Error('NetlinkWriter: endMessage without beginMessage');
    this.buf.writeUInt32LE(this.pos - start, start);
    this.pad();
  }

  attr(type: number, value: Buffer): void {
    const len = NLA_HDRLEN + value.length;
    this.reserve(align4(len));
    this.buf.writeUInt16LE(len, this.pos);
    this.buf.writeUInt16LE(type, this.pos + 2);
    value.copy(this.buf, this.pos + NLA_HDRLEN);
    this.pos += len;
    this.pad();
  }

  /** NUL-terminated string attribute. */
  str(type: number, value: string): void {
    const bytes = Buffer.byteLength(value);
    const len = NLA_HDRLEN + bytes + 1;
    this.reserve(align4(len));
    this.buf.writeUInt16LE(len, this.pos);
    this.buf.writeUInt16LE(type, this.pos + 2);
    this.buf.write(value, this.pos + NLA_HDRLEN);
    this.buf[this.pos + NLA_HDRLEN + bytes] = 0;
    this.pos += len;
    this.pad();
  }

  /** Big-endian u32 (nf_tables' byte order for numeric attributes). */
  u32(type: number, value: number): void {
    this.reserve(8);
    this.buf.writeUInt16LE(8, this.pos);
    this.buf.writeUInt16LE(type, this.pos + 2);
    this.buf.writeUInt32BE(value >>> 0, this.pos + 4);
    this.pos += 8;
  }

  /** Big-endian u64. */
  u64(type: number, value: bigint): void {
    this.reserve(12);
    this.buf.writeUInt16LE(12, this.pos);
    this.buf.writeUInt16LE(type, this.pos + 2);
    this.buf.writeBigUInt64BE(value, this.pos + 4);
    this.pos += 12;
  }

  beginNest(type: number): void {
    this.reserve(NLA_HDRLEN);
    this.open.push(this.pos);
    this.buf.writeUInt16LE(0, this.pos);
    this.buf.writeUInt16LE(type | NLA_F_NESTED, this.pos + 2);
    this.pos += NLA_HDRLEN;
  }

  endNest(): void {
    const start = this.open.pop();
    if (start === undefined) throw new Error('NetlinkWriter: endNest without beginNest');
    const len = this.pos - start;
    if (len > 0xffff)
      throw new Error(
        `netlink attribute type ${this.buf.readUInt16LE(start + 2) & ~NLA_F_NESTED} of ${len} bytes exceeds nla_len's limit of 65535`,
      );
    this.buf.writeUInt16LE(len, start);
  }

  /** A copy of everything written so far. */
  toBuffer(): Buffer {
    if (this.open.length > 0) throw new Error('NetlinkWriter: unterminated message or nest');
    return Buffer.from(this.buf.subarray(0, this.pos));
  }
}

/** One attribute: its type (flags stripped) and a view of its payload. */
export interface Attr {
  type: number;
  nested: boolean;
  value: Buffer;
}

/** Splits a buffer of attributes into a list (views, no copies). Throws on truncation. */
export function parseAttrs(buf: Buffer): Attr[] {
  const out: Attr[] = [];
  let off = 0;
  while (off + NLA_HDRLEN <= buf.length) {
    const len = buf.readUInt16LE(off);
    const rawType = buf.readUInt16LE(off + 2);
    if (len < NLA_HDRLEN || off + len > buf.length) {
      throw new Error(`malformed netlink attribute at offset ${off}: length ${len}`);
    }
    out.push({
      type: rawType & NLA_TYPE_MASK,
      nested: (rawType & NLA_F_NESTED) !== 0,
      value: buf.subarray(off + NLA_HDRLEN, off + len),
    });
    off += align4(len);
  }
  return out;
}

/** Attributes as a map from type to the last attribute of that type (nf_tables never repeats one, except lists). */
export function attrMap(buf: Buffer): Map<number, Attr> {
  const m = new Map<number, Attr>();
  for (const a of parseAttrs(buf)) m.set(a.type, a);
  return m;
}

export const readStr = (a: Attr): string => {
  const nul = a.value.indexOf(0);
  return a.value.toString('utf8', 0, nul === -1 ? a.value.length : nul);
};
export const readU32 = (a: Attr): number => a.value.readUInt32BE(0);
export const readU64 = (a: Attr): bigint => a.value.readBigUInt64BE(0);

/** One netlink message from a stream of them. */
export interface NetlinkMessage {
  type: number;
  flags: number;
  seq: number;
  /** nfgenmsg family (only meaningful for nfnetlink messages). */
  family: number;
  /** Payload after nlmsghdr + nfgenmsg: the attributes. */
  attrs: Buffer;
  /** The whole message. */
  raw: Buffer;
}

export function parseMessages(buf: Buffer): NetlinkMessage[] {
  const out: NetlinkMessage[] = [];
  let off = 0;
  while (off + NLMSG_HDRLEN <= buf.length) {
    const len = buf.readUInt32LE(off);
    if (len < NLMSG_HDRLEN || off + len > buf.length) {
      throw new Error(`malformed netlink message at offset ${off}: length ${len}`);
    }
    const hasGen = len >= NLMSG_HDRLEN + NFGENMSG_LEN;
    out.push({
      type: buf.readUInt16LE(off + 4),
      flags: buf.readUInt16LE(off + 6),
      seq: buf.readUInt32LE(off + 8),
      family: hasGen ? buf.readUInt8(off + 16) : 0,
      attrs: buf.subarray(off + NLMSG_HDRLEN + (hasGen ? NFGENMSG_LEN : 0), off + len),
      raw: buf.subarray(off, off + len),
    });
    off += align4(len);
  }
  return out;
}
