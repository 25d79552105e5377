// The meshcni entry as data: insertion into lists and lone configs, idempotence, update, removal, errors.
import { describe, expect, it } from 'vitest';
import { CniConfigError, insertEntry, listFileName, meshcniEntry, removeEntry } from '../../src/install/conflist.js';

const entry = meshcniEntry({ socketPath: '/var/run/meshcni/cni.sock', excludeNamespaces: ['kube-system'] });

const BRIDGE_LIST = JSON.stringify({
  cniVersion: '1.0.0',
  name: 'bridge-net',
  disableCheck: true,
  plugins: [
    {
      type: 'bridge',
      bridge: 'cni0',
      isGateway: true,
      ipam: { type: 'host-local', ranges: [[{ subnet: '10.22.0.0/16' }]] },
    },
    { type: 'portmap', capabilities: { portMappings: true } },
  ],
});

const LONE_CONF = JSON.stringify({
  cniVersion: '0.4.0',
  name: 'dbnet',
  type: 'bridge',
  bridge: 'cni0',
  ipam: { type: 'host-local', subnet: '10.1.0.0/16', gateway: '10.1.0.1' },
});

describe('meshcniEntry', () => {
  it('carries what the shim reads, with the default timeout and log level', () => {
    expect(entry).toEqual({
      type: 'meshcni',
      socketPath: '/var/run/meshcni/cni.sock',
      excludeNamespaces: ['kube-system'],
      timeoutSeconds: 5,
      logLevel: 'info',
      podIndexPath: '/var/run/meshcni/pod-index',
    });
  });
});

describe('insertEntry', () => {
  it('appends the entry to a conflist and keeps every other plug-in and field', () => {
    const r = insertEntry('/etc/cni/net.d/10-bridge.conflist', BRIDGE_LIST, entry);
    expect(r).toMatchObject({
      fileName: '/etc/cni/net.d/10-bridge.conflist',
      changed: true,
      hadEntry: false,
      converted: false,
    });
    const orig = JSON.parse(BRIDGE_LIST);
    const out = JSON.parse(r.text);
    expect(out).toEqual({ ...orig, plugins: [...orig.plugins, entry] });
    expect(Object.keys(out)).toEqual(Object.keys(orig));
  });

  it('turns a lone .conf into a .conflist: original minus cniVersion, then meshcni', () => {
    const r = insertEntry('10-bridge.conf', LONE_CONF, entry);
    expect(r).toMatchObject({ fileName: '10-bridge.conflist', changed: true, converted: true });
    const { cniVersion, ...plugin } = JSON.parse(LONE_CONF);
    expect(JSON.parse(r.text)).toEqual({ cniVersion, name: 'dbnet', plugins: [plugin, entry] });
  });

  it.each([
    ['a .json lone config', '05-net.json', '05-net.conflist'],
    ['a lone config already named .conflist', '05-net.conflist', '05-net.conflist'],
  ])('names the converted file for %s', (_case, from, to) => {
    expect(insertEntry(from, LONE_CONF, entry).fileName).toBe(to);
    expect(listFileName(from)).toBe(to);
  });

  it("falls back to istio-cni's cniVersion and network name when the lone config has none", () => {
    const r = insertEntry('x.conf', JSON.stringify({ type: 'ptp' }), entry);
    expect(JSON.parse(r.text)).toEqual({
      cniVersion: '0.3.1',
      name: 'k8s-pod-network',
      plugins: [{ type: 'ptp' }, entry],
    });
  });

  it('never inserts twice: a second insertion is a no-op returning the same text', () => {
    const once = insertEntry('10-bridge.conflist', BRIDGE_LIST, entry);
    const twice = insertEntry('10-bridge.conflist', once.text, entry);
    expect(twice).toMatchObject({ changed: false, hadEntry: true, text: once.text });
    expect(JSON.parse(twice.text).plugins.filter((p: { type: string }) => p.type === 'meshcni')).toHaveLength(1);
  });

  it('updates an existing entry in place when its settings differ', () => {
    const doc = JSON.parse(BRIDGE_LIST);
    doc.plugins.splice(1, 0, { ...entry, socketPath: '/old.sock' });
    const r = insertEntry('10-bridge.conflist', JSON.stringify(doc), entry);
    expect(r).toMatchObject({ changed: true, hadEntry: true });
    expect(JSON.parse(r.text).plugins.map((p: { type: string }) => p.type)).toEqual(['bridge', 'meshcni', 'portmap']);
    expect(JSON.parse(r.text).plugins[1]).toEqual(entry);
  });

  it('collapses duplicate meshcni entries into one', () => {
    const doc = JSON.parse(BRIDGE_LIST);
    doc.plugins.push(entry, { ...entry });
    const r = insertEntry('10-bridge.conflist', JSON.stringify(doc), entry);
    expect(r.changed).toBe(true);
    expect(JSON.parse(r.text).plugins.map((p: { type: string }) => p.type)).toEqual(['bridge', 'portmap', 'meshcni']);
  });

  it.each([
    ['malformed JSON', '{"plugins": [', /10-x.conflist: malformed JSON/],
    ['a JSON array', '[]', /10-x.conflist: must be a JSON object/],
    ['neither plugins nor type', '{"cniVersion":"1.0.0","name":"x"}', /10-x.conflist: missing 'plugins'/],
    ['plugins not an array', '{"plugins": {}}', /10-x.conflist: 'plugins' must be an array/],
    ['an empty plugins list', '{"plugins": []}', /10-x.conflist: 'plugins' is empty/],
    ['a plug-in without type', '{"plugins": [{"name":"a"}]}', /10-x.conflist: plugins\[0\] must be an object/],
  ])('rejects %s with an error naming the file', (_case, text, message) => {
    expect(() => insertEntry('/etc/cni/net.d/10-x.conflist', text, entry)).toThrow(CniConfigError);
    expect(() => insertEntry('/etc/cni/net.d/10-x.conflist', text, entry)).toThrow(message);
  });

  it('rejects a file name the runtime would not load', () => {
    expect(() => insertEntry('/etc/cni/net.d/10-x.yaml', BRIDGE_LIST, entry)).toThrow(
      /10-x.yaml: not a CNI config file name/,
    );
  });
});

describe('removeEntry', () => {
  it('is the inverse of insertion on a list (as data)', () => {
    const inserted = insertEntry('10-bridge.conflist', BRIDGE_LIST, entry);
    const removed = removeEntry('10-bridge.conflist', inserted.text);
    expect(removed.changed).toBe(true);
    expect(JSON.parse(removed.text)).toEqual(JSON.parse(BRIDGE_LIST));
  });

  it('leaves a config without our entry alone', () => {
    expect(removeEntry('10-bridge.conflist', BRIDGE_LIST)).toEqual({ text: BRIDGE_LIST, changed: false });
    expect(removeEntry('10-bridge.conf', LONE_CONF)).toEqual({ text: LONE_CONF, changed: false });
  });

  it('refuses to leave an empty plug-in list', () => {
    expect(() => removeEntry('x.conflist', JSON.stringify({ plugins: [entry] }))).toThrow(
      /x.conflist: holds only the meshcni entry/,
    );
  });
});
