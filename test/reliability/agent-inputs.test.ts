// The agent reads the inputs the shim reads by the same rules (issue 22): a request body that is not
// valid UTF-8 is refused, not decoded lossily; \u0000 in any string of the configuration is refused
// (the shim's parser refuses it too); a CNI_ARGS key given twice is refused (the shim refuses it too).
import { mkdtempSync, rmSync } from 'node:fs';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pino from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseCniArgs, parseCniRequest } from '../../src/agent/cni.js';
import { CniSocketServer } from '../../src/agent/endpoint/server.js';

const dir = mkdtempSync(join(tmpdir(), 'mcni-inputs-'));
const socketPath = join(dir, 'cni.sock');
let calls = 0;
const server = new CniSocketServer({
  socketPath,
  handler: async () => {
    calls++;
    return { cniVersion: '1.1.0' };
  },
  log: pino({ level: 'silent' }),
});
beforeAll(() => server.listen());
afterAll(async () => {
  await server.close();
  rmSync(dir, { recursive: true, force: true });
});

/** POSTs `body` raw and returns the HTTP status and the parsed answer. */
function post(body: Buffer): Promise<{ status: number; answer: { code?: number; msg?: string } }> {
  return new Promise((done, fail) => {
    const s = connect(socketPath);
    const chunks: Buffer[] = [];
    s.on('data', (c: Buffer) => chunks.push(c));
    s.on('error', fail);
    s.on('end', () => {
      const text = Buffer.concat(chunks).toString();
      const [head = '', rest = ''] = text.split('\r\n\r\n');
      done({ status: Number(head.split(' ')[1]), answer: JSON.parse(rest) as { code?: number; msg?: string } });
    });
    s.end(
      Buffer.concat([
        Buffer.from(
          `POST /v1/cni HTTP/1.1\r\nContent-Type: application/json\r\nContent-Length: ${body.length}\r\n\r\n`,
        ),
        body,
      ]),
    );
  });
}

const request = (netns: string, config: Record<string, unknown> = {}) => ({
  command: 'ADD',
  containerId: 'c0ffee',
  netns,
  ifName: 'eth0',
  args: 'K8S_POD_NAMESPACE=shop;K8S_POD_NAME=cart',
  path: '/opt/cni/bin',
  config: { cniVersion: '1.1.0', name: 'net', type: 'meshcni', ...config },
});

describe('agent inputs', () => {
  it('refuses a request body that is not valid UTF-8 instead of reading U+FFFD into it', async () => {
    const text = JSON.stringify(request('/var/run/netns/pX'));
    const bytes = Buffer.from(text);
    bytes[text.indexOf('pX') + 1] = 0xff; // /var/run/netns/p\xff
    const before = calls;
    const r = await post(bytes);
    expect(r.status).toBe(400);
    expect(r.answer.msg).toBe('request body is not valid UTF-8');
    expect(calls).toBe(before);
  });

  const nuls = [
    { name: 'a key', config: { 'excludeNamespaces\u0000x': ['shop'] }, at: 'config key "excludeNamespaces\\u0000x"' },
    { name: 'a value', config: { excludeNamespaces: ['sh\u0000op'] }, at: 'config.excludeNamespaces[0]' },
  ];
  for (const c of nuls) {
    it(`refuses \\u0000 in ${c.name} of the configuration, naming where`, async () => {
      expect(() => parseCniRequest(request('/var/run/netns/p', c.config))).toThrow(`${c.at} holds \\u0000`);
      const r = await post(Buffer.from(JSON.stringify(request('/var/run/netns/p', c.config))));
      expect(r.status).toBe(400);
      expect(r.answer.code).toBe(6);
    });
  }

  it('refuses a CNI_ARGS key given twice, and reads each key once otherwise', () => {
    const twice = () => parseCniArgs('K8S_POD_NAME=a;K8S_POD_NAME=b');
    expect(twice).toThrow("CNI_ARGS names key 'K8S_POD_NAME' more than once");
    expect(parseCniArgs('K8S_POD_NAMESPACE=shop;K8S_POD_NAME=cart;').get('K8S_POD_NAME')).toBe('cart');
  });

  it('still answers a well-formed request', async () => {
    const r = await post(Buffer.from(JSON.stringify(request('/var/run/netns/p'))));
    expect(r.status).toBe(200);
  });
});
