// The agent's settings file: defaults, flags on top, and errors that name the key and the value.
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { DEFAULT_SETTINGS, loadSettingsFile, parseSettings } from '../../src/agent/config.js';

describe('agent settings', () => {
  it('fills defaults and passes capture keys through to the capture engine', () => {
    const s = parseSettings({ podsDir: '/srv/pods', excludeNamespaces: ['a'], layout: 'nft' }, 'test');
    expect(s.socketPath).toBe(DEFAULT_SETTINGS.socketPath);
    expect(s.cniConfDir).toBe('/etc/cni/net.d');
    expect(s.cniBinDir).toBe('/opt/cni/bin');
    expect(s.podsDir).toBe('/srv/pods');
    expect(s.capture).toEqual({ excludeNamespaces: ['a'], layout: 'nft' });
  });

  it.each([
    [{ socketPth: '/x' }, /setting 'socketPth' = "\/x": unknown setting/],
    [{ socketPath: 'relative.sock' }, /'socketPath' = "relative.sock": must be an absolute path/],
    [{ metricsAddress: '0.0.0.0:15120' }, /'metricsAddress' = "0.0.0.0:15120": must be a loopback host:port/],
    [{ repairPolicy: 'fix' }, /'repairPolicy' = "fix": must be one of capture, repair, delete, report/],
    [{ reconcileIntervalSeconds: -1 }, /'reconcileIntervalSeconds' = -1: must be an integer/],
    [{ install: 'yes' }, /'install' = "yes": must be true or false/],
  ])('rejects %j naming the key and value', (obj, message) => {
    expect(() => parseSettings(obj as Record<string, unknown>, 'cfg.yaml')).toThrow(message);
  });

  it('reads YAML files and says which file is broken', () => {
    const dir = mkdtempSync(join(tmpdir(), 'mcni-cfg-'));
    try {
      const good = join(dir, 'good.yaml');
      writeFileSync(good, 'socketPath: /run/x.sock\nlogLevel: debug\n');
      expect(loadSettingsFile(good)).toEqual({ socketPath: '/run/x.sock', logLevel: 'debug' });
      const bad = join(dir, 'bad.yaml');
      writeFileSync(bad, 'socketPath: [unclosed\n');
      expect(() => loadSettingsFile(bad)).toThrow(/bad\.yaml is not valid YAML/);
      const list = join(dir, 'list.yaml');
      writeFileSync(list, '- a\n- b\n');
      expect(() => loadSettingsFile(list)).toThrow(/must be a YAML mapping/);
      expect(() => loadSettingsFile(join(dir, 'missing.yaml'))).toThrow(/cannot read config file .*missing\.yaml/);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
